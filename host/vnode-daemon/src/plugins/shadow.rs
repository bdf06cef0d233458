//! Shadow rollout: a candidate placement policy (`plugins.placement.shadow`) decides for every
//! live pod next to the active one, on the same pod view and context, and never acts. Each
//! comparison is counted (`vnode_plugin_shadow_decisions{active, shadow, result}`) and every
//! disagreement is logged at info with both decisions in full, so a team can promote a policy
//! on evidence.
//!
//! The shadow is off the critical path: the pod path hands it the inputs after the active
//! decision and returns at once. Shadow calls run on tokio's blocking pool (not on the
//! runtime's workers, and not through the active slots' call semaphore), at most
//! [`DEFAULT_SHADOW_CONCURRENCY`] at a time; a decision that finds every permit taken is
//! dropped and counted (`result="dropped"`), never queued.

use std::sync::Arc;

use tokio::sync::{Semaphore, watch};
use vnode_plugin_host::contract::{Attempt, Decision, PlacementContext, PodView};
use vnode_plugin_host::{Decided, PluginIdentity, PluginSlot, RefusedReload};

use crate::metrics::Metrics;

/// Shadow decisions running at once; more are dropped.
pub const DEFAULT_SHADOW_CONCURRENCY: usize = 2;

/// How a shadow decision compares with the active one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Same outcome (for accepts: the same attempts, reasons aside).
    Agree,
    /// Different outcome; the fields that differ (see [`decision_differences`]).
    Disagree(Vec<&'static str>),
}

impl Verdict {
    /// The metric's `result` label.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Agree => "agree",
            Verdict::Disagree(_) => "disagree",
        }
    }
}

/// What differs between two decisions for the same pod; empty when they agree. Reasons never
/// count (two policies always word them differently). Outcome kinds first (`decision`: accept
/// vs refuse vs defer; two deferrals agree whatever their delay), then for two accepts the
/// first attempt field by field (`zone`, `vswitches`, `sizing`, `spot` = strategy, price limit
/// and protection period, `tags`) and the fallbacks (`fallbacks`: every later attempt,
/// in order). `vnode plugin simulate --against` uses the same rule, so its prediction and the
/// daemon's shadow counts can be compared.
pub fn decision_differences(a: &Decision, b: &Decision) -> Vec<&'static str> {
    let (Decision::Accept(a), Decision::Accept(b)) = (a, b) else {
        return if std::mem::discriminant(a) == std::mem::discriminant(b) {
            Vec::new()
        } else {
            vec!["decision"]
        };
    };
    let (Some(fa), Some(fb)) = (a.attempts.first(), b.attempts.first()) else {
        return if a.attempts.is_empty() && b.attempts.is_empty() {
            Vec::new()
        } else {
            vec!["attempts"]
        };
    };
    let mut out = Vec::new();
    if fa.zone_id != fb.zone_id {
        out.push("zone");
    }
    if fa.vswitch_ids != fb.vswitch_ids {
        out.push("vswitches");
    }
    if fa.sizing != fb.sizing {
        out.push("sizing");
    }
    if fa.spot != fb.spot || fa.spot_duration_hours != fb.spot_duration_hours {
        out.push("spot");
    }
    if fa.extra_tags != fb.extra_tags {
        out.push("tags");
    }
    let rest = |x: &[Attempt]| x.iter().skip(1).cloned().collect::<Vec<_>>();
    if rest(&a.attempts) != rest(&b.attempts) {
        out.push("fallbacks");
    }
    out
}

/// Compares a shadow decision with the active one.
pub fn judge(active: &Decision, shadow: &Decision) -> Verdict {
    let differs = decision_differences(active, shadow);
    if differs.is_empty() {
        Verdict::Agree
    } else {
        Verdict::Disagree(differs)
    }
}

/// `name@version`, the metric label of a plugin version.
fn label(p: &PluginIdentity) -> String {
    format!("{}@{}", p.name, p.version)
}

/// A decision as one JSON line for the log (the contract types serialize).
fn decision_json(d: &Decision) -> String {
    serde_json::to_string(d).unwrap_or_else(|e| format!("{d:?} (not serializable: {e})"))
}

/// What the node shows about the shadow: the candidate (if any) and the last candidate that
/// could not be loaded (its own slot records refused hot reloads of its file).
#[derive(Debug, Clone, Default)]
pub struct ShadowState {
    /// The candidate's slot; `None` = no shadow configured.
    pub slot: Option<Arc<PluginSlot>>,
    /// The last shadow spec from the config file that was refused.
    pub last_refused: Option<RefusedReload>,
}

/// The shadow candidate (if one is configured) and the bound on its concurrent runs.
pub struct ShadowPlacement {
    /// A `watch` so the node forwarder sees a shadow start, stop or be refused.
    state: watch::Sender<ShadowState>,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for ShadowPlacement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShadowPlacement")
            .field("candidate", &self.state.borrow().slot)
            .field("free_permits", &self.permits.available_permits())
            .finish()
    }
}

impl ShadowPlacement {
    /// No candidate yet; at most `concurrency` shadow decisions at once (at least 1).
    pub fn new(concurrency: usize) -> ShadowPlacement {
        ShadowPlacement {
            state: watch::Sender::new(ShadowState::default()),
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// Whether a candidate is configured (the pod path copies its inputs only then).
    pub fn is_enabled(&self) -> bool {
        self.state.borrow().slot.is_some()
    }

    /// The candidate's slot, if any.
    pub fn candidate(&self) -> Option<Arc<PluginSlot>> {
        self.state.borrow().slot.clone()
    }

    /// Starts (`Some`) or stops (`None`) shadowing; clears a recorded refusal.
    pub fn set(&self, slot: Option<Arc<PluginSlot>>) {
        self.state.send_modify(|s| {
            s.slot = slot;
            s.last_refused = None;
        });
    }

    /// Records a shadow candidate that could not be loaded (the previous one, if any, keeps
    /// shadowing).
    pub fn record_refusal(&self, refusal: RefusedReload) {
        tracing::warn!(
            file = %refusal.file.display(),
            reason = %refusal.reason,
            "shadow placement candidate refused; the previous shadow (if any) keeps running"
        );
        self.state.send_modify(|s| s.last_refused = Some(refusal));
    }

    /// Candidate changes and refusals, for the node's plugin health.
    pub fn subscribe(&self) -> watch::Receiver<ShadowState> {
        self.state.subscribe()
    }

    /// Runs the candidate on the same inputs as `active` (the active decision for the pod
    /// `pod`), off the caller's path: returns at once. Counts `dropped` when every permit is
    /// taken; otherwise the comparison is counted and a disagreement logged when the shadow
    /// answers. Does nothing without a candidate.
    pub fn submit(
        &self,
        pod: String,
        view: PodView,
        context: PlacementContext,
        active: &Decided<Decision>,
        metrics: &Arc<Metrics>,
    ) {
        let Some(slot) = self.candidate() else {
            return;
        };
        let active_label = label(&active.plugin);
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            let shadow_label = label(slot.current().identity());
            metrics.shadow_decision(&active_label, &shadow_label, "dropped");
            tracing::debug!(pod, active = %active_label, shadow = %shadow_label, "shadow placement saturated; decision dropped");
            return;
        };
        let active_decision = active.value.clone();
        let metrics = metrics.clone();
        // The blocking pool, not `block_in_place`: the shadow must not take a runtime worker
        // (or an active call's permit) away from the pod path.
        drop(tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let decided = slot.place_blocking(&view, context);
            record(&pod, &active_label, &active_decision, decided, &metrics);
        }));
    }
}

fn record(
    pod: &str,
    active_label: &str,
    active: &Decision,
    shadow: Result<Decided<Decision>, vnode_plugin_host::CallError>,
    metrics: &Metrics,
) {
    match shadow {
        Err(e) => {
            let shadow_label = label(&e.plugin);
            metrics.shadow_decision(active_label, &shadow_label, "shadow_error");
            tracing::info!(pod, active = %active_label, shadow = %shadow_label, error = %e, "shadow placement failed (the active decision stands)");
        }
        Ok(decided) => {
            let shadow_label = label(&decided.plugin);
            let verdict = judge(active, &decided.value);
            metrics.shadow_decision(active_label, &shadow_label, verdict.label());
            if let Verdict::Disagree(differs) = verdict {
                tracing::info!(
                    pod,
                    active = %active_label,
                    shadow = %shadow_label,
                    differs = %differs.join(","),
                    active_decision = %decision_json(active),
                    shadow_decision = %decision_json(&decided.value),
                    "shadow placement disagrees"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vnode_plugin_host::contract::{Accepted, Deferral, KeyValue, Sizing, SpotStrategy};

    fn attempt(zone: &str, spot: SpotStrategy) -> Attempt {
        Attempt {
            zone_id: Some(zone.into()),
            vswitch_ids: vec![format!("vsw-{zone}")],
            schedule_strategy: None,
            sizing: Sizing::Auto,
            spot,
            spot_duration_hours: None,
            compute_categories: Vec::new(),
            extra_tags: Vec::new(),
        }
    }

    fn accept(attempts: Vec<Attempt>, reason: &str) -> Decision {
        Decision::Accept(Accepted {
            attempts,
            reason: reason.into(),
        })
    }

    #[test]
    fn reasons_never_count_but_every_decision_field_does() {
        let a = accept(vec![attempt("h", SpotStrategy::OnDemand)], "fewest groups");
        let b = accept(vec![attempt("h", SpotStrategy::OnDemand)], "cheapest");
        assert_eq!(judge(&a, &b), Verdict::Agree);
        assert_eq!(
            judge(&Decision::Refuse("x".into()), &Decision::Refuse("y".into())),
            Verdict::Agree
        );
        let defer = |ms, r: &str| {
            Decision::Defer(Deferral {
                retry_after_ms: ms,
                reason: r.into(),
            })
        };
        assert_eq!(judge(&defer(10, "a"), &defer(20, "b")), Verdict::Agree);

        // Outcome kind.
        assert_eq!(
            judge(&a, &Decision::Refuse("no".into())),
            Verdict::Disagree(vec!["decision"])
        );
        assert_eq!(
            judge(&Decision::Refuse("no".into()), &defer(1, "later")),
            Verdict::Disagree(vec!["decision"])
        );
        // Zone and vSwitch.
        let other_zone = accept(vec![attempt("i", SpotStrategy::OnDemand)], "");
        assert_eq!(
            judge(&a, &other_zone),
            Verdict::Disagree(vec!["zone", "vswitches"])
        );
        // Spot strategy and price limit.
        let spot = accept(vec![attempt("h", SpotStrategy::SpotAsPriceGo)], "");
        assert_eq!(judge(&a, &spot), Verdict::Disagree(vec!["spot"]));
        let limit = |p| accept(vec![attempt("h", SpotStrategy::SpotWithPriceLimit(p))], "");
        assert_eq!(judge(&limit(0.5), &limit(0.5)), Verdict::Agree);
        assert_eq!(
            judge(&limit(0.5), &limit(0.6)),
            Verdict::Disagree(vec!["spot"])
        );
        // Spec.
        let mut spec = attempt("h", SpotStrategy::OnDemand);
        spec.sizing = Sizing::InstanceTypes(vec!["ecs.c6.large".into()]);
        assert_eq!(
            judge(&a, &accept(vec![spec], "")),
            Verdict::Disagree(vec!["sizing"])
        );
        // Tags.
        let mut tagged = attempt("h", SpotStrategy::OnDemand);
        tagged.extra_tags.push(KeyValue {
            key: "team".into(),
            value: "a".into(),
        });
        assert_eq!(
            judge(&a, &accept(vec![tagged], "")),
            Verdict::Disagree(vec!["tags"])
        );
        // The order of the attempts counts: same first attempt, different fallbacks.
        let ab = accept(
            vec![
                attempt("h", SpotStrategy::OnDemand),
                attempt("i", SpotStrategy::OnDemand),
                attempt("j", SpotStrategy::OnDemand),
            ],
            "",
        );
        let ba = accept(
            vec![
                attempt("h", SpotStrategy::OnDemand),
                attempt("j", SpotStrategy::OnDemand),
                attempt("i", SpotStrategy::OnDemand),
            ],
            "",
        );
        assert_eq!(judge(&ab, &ba), Verdict::Disagree(vec!["fallbacks"]));
        assert_eq!(judge(&ab, &a), Verdict::Disagree(vec!["fallbacks"]));
        assert_eq!(judge(&ab, &ab.clone()), Verdict::Agree);
        // An accept without attempts (refused by the host's checks anyway) vs one with.
        assert_eq!(
            judge(&accept(Vec::new(), ""), &a),
            Verdict::Disagree(vec!["attempts"])
        );
    }

    async fn load(bytes: &'static [u8], config: &str) -> Arc<vnode_plugin_host::LoadedPlugin> {
        let engine =
            vnode_plugin_host::PluginEngine::new(vnode_plugin_host::RuntimeConfig::default())
                .expect("engine");
        vnode_plugin_host::PluginLoader::new(engine, None)
            .load(
                vnode_plugin_host::PluginSource {
                    bytes: bytes.to_vec(),
                    path: None,
                },
                Some(vnode_plugin_host::PluginKind::Placement),
                config.to_string(),
            )
            .await
            .expect("built-in plugin loads")
    }

    fn count(metrics: &Metrics, result: &str) -> u64 {
        let text = metrics.encode();
        text.lines()
            .filter(|l| {
                l.starts_with("vnode_plugin_shadow_decisions_total{")
                    && l.contains(&format!("result=\"{result}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    async fn wait_count(metrics: &Metrics, result: &str, n: u64) {
        for _ in 0..200 {
            if count(metrics, result) >= n {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(count(metrics, result), n, "{}", metrics.encode());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_runner_compares_off_the_path_and_drops_when_saturated() {
        let metrics = Arc::new(Metrics::new());
        let (view, context) = vnode_plugin_host::samples::placement_sample();
        let active_plugin = load(vnode_plugin_host::builtin::ZONE_SPREAD, "").await;
        let active = active_plugin
            .place_blocking(&view, context.clone())
            .expect("active decides");

        // No candidate: nothing runs, nothing is counted.
        let shadow = ShadowPlacement::new(1);
        assert!(!shadow.is_enabled());
        shadow.submit(
            "ns/p0".into(),
            view.clone(),
            context.clone(),
            &active,
            &metrics,
        );

        // The same plugin and configuration: agrees.
        let same = Arc::new(PluginSlot::new(
            load(vnode_plugin_host::builtin::ZONE_SPREAD, "").await,
        ));
        shadow.set(Some(same));
        assert!(shadow.is_enabled());
        shadow.submit(
            "ns/p1".into(),
            view.clone(),
            context.clone(),
            &active,
            &metrics,
        );
        wait_count(&metrics, "agree", 1).await;

        // Another spot strategy: disagrees.
        let spot = Arc::new(PluginSlot::new(
            load(
                vnode_plugin_host::builtin::ZONE_SPREAD,
                "spot-strategy = SpotAsPriceGo",
            )
            .await,
        ));
        shadow.set(Some(spot));
        shadow.submit(
            "ns/p2".into(),
            view.clone(),
            context.clone(),
            &active,
            &metrics,
        );
        wait_count(&metrics, "disagree", 1).await;

        // Every permit taken: dropped at once, never queued.
        let held = shadow
            .permits
            .clone()
            .try_acquire_owned()
            .expect("free permit");
        for i in 0..5 {
            shadow.submit(
                format!("ns/d{i}"),
                view.clone(),
                context.clone(),
                &active,
                &metrics,
            );
        }
        assert_eq!(count(&metrics, "dropped"), 5);
        drop(held);
        shadow.submit(
            "ns/p3".into(),
            view.clone(),
            context.clone(),
            &active,
            &metrics,
        );
        wait_count(&metrics, "disagree", 2).await;

        // Stopping the shadow stops the runs.
        shadow.set(None);
        shadow.submit("ns/p4".into(), view, context, &active, &metrics);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(count(&metrics, "agree") + count(&metrics, "disagree"), 3);
        let text = metrics.encode();
        assert!(
            text.contains("active=\"zone-spread@") && text.contains("shadow=\"zone-spread@"),
            "{text}"
        );
    }
}
