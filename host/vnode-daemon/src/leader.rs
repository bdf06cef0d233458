//! Lease-based leader election between replicas: one acts, the others wait and take over
//! within the lease duration when it stops renewing.
//!
//! Why not a crate: `kube-lease-manager` (the maintained kube 5 option) updates the Lease with
//! server-side apply and strategic-merge patches, which not every API server we must run
//! against implements (the embedded `vnode apiserver` does not do SSA). This module follows
//! client-go's `leaderelection` instead: plain get / create / update guarded by
//! `resourceVersion`, so two candidates can never both win the same round (the loser's update
//! fails with 409), and expiry is judged on the **local** clock from when we last saw the
//! record change, so clock skew between machines cannot make a live leader look expired.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::LeaderElectionConfig;

/// One candidate in the election.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
    retry_period: Duration,
    /// The last record we saw (holder, renewTime) and when we first saw it, on our clock.
    observed: Mutex<Option<(String, Instant)>>,
}

impl LeaderElector {
    /// A candidate for the Lease `cfg.namespace/cfg.lease_name` with identity `cfg.identity`.
    pub fn new(client: Client, cfg: &LeaderElectionConfig) -> Self {
        Self {
            api: Api::namespaced(client, &cfg.namespace),
            name: cfg.lease_name.clone(),
            identity: cfg.identity.clone(),
            lease_duration: cfg.lease_duration,
            retry_period: cfg.retry_period,
            observed: Mutex::new(None),
        }
    }

    /// One round: acquire the lease if it is free or expired, renew it if we hold it.
    /// Returns whether we hold it afterwards. A lost race (409) is `Ok(false)`.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = jiff::Timestamp::now();
        let duration_secs = i32::try_from(self.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let held_by_us = holder == self.identity;
        if !held_by_us && !holder.is_empty() && !self.observed_expired(&spec) {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(duration_secs),
            acquire_time: if held_by_us {
                spec.acquire_time.clone()
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if held_by_us {
                transitions
            } else {
                transitions.saturating_add(1)
            }),
            ..spec
        });
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// True if the record has not changed for longer than its duration, on our clock.
    fn observed_expired(&self, spec: &LeaseSpec) -> bool {
        let record = format!(
            "{}|{}",
            spec.holder_identity.as_deref().unwrap_or_default(),
            spec.renew_time
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default()
        );
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(self.lease_duration);
        let mut observed = self.observed.lock();
        match observed.as_ref() {
            Some((seen, since)) if *seen == record => since.elapsed() > duration,
            _ => {
                *observed = Some((record, Instant::now()));
                false
            }
        }
    }

    /// Gives the lease up if we hold it, so a standby takes over at once instead of after
    /// the lease duration.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) | Err(kube::Error::Api(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Campaigns until `token` is cancelled, publishing whether we lead on `leading`.
    /// A leader that cannot renew for two thirds of the lease duration steps down (publishes
    /// `false`) before anyone else may take over, so two replicas never act at once.
    pub async fn run(self, leading: watch::Sender<bool>, token: CancellationToken) {
        let renew_deadline = self.lease_duration * 2 / 3;
        let mut last_renewed: Option<Instant> = None;
        loop {
            let outcome = tokio::select! {
                biased;
                () = token.cancelled() => break,
                r = self.try_acquire_or_renew() => r,
            };
            match outcome {
                Ok(true) => {
                    if !*leading.borrow() {
                        tracing::info!(identity = %self.identity, lease = %self.name, "became leader");
                    }
                    last_renewed = Some(Instant::now());
                    leading.send_if_modified(|l| !std::mem::replace(l, true));
                }
                Ok(false) => {
                    if *leading.borrow() {
                        tracing::warn!(identity = %self.identity, "leadership taken by another replica");
                    }
                    last_renewed = None;
                    leading.send_if_modified(|l| std::mem::replace(l, false));
                }
                Err(e) => {
                    tracing::warn!(identity = %self.identity, error = %e, "leader election round failed");
                    if last_renewed.is_some_and(|t| t.elapsed() > renew_deadline) {
                        tracing::warn!(identity = %self.identity, "could not renew leadership in time; stepping down");
                        last_renewed = None;
                        leading.send_if_modified(|l| std::mem::replace(l, false));
                    }
                }
            }
            tokio::select! {
                biased;
                () = token.cancelled() => break,
                () = tokio::time::sleep(self.retry_period) => {}
            }
        }
        if *leading.borrow() {
            if let Err(e) = self.release().await {
                tracing::warn!(error = %e, "releasing the leader lease failed; the standby takes over after it expires");
            }
            leading.send_replace(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeApi, lease_path, status};

    fn cfg(identity: &str, lease_ms: u64) -> LeaderElectionConfig {
        LeaderElectionConfig {
            enabled: true,
            namespace: "kube-system".into(),
            lease_name: "vnode-virtual-kubelet".into(),
            identity: identity.into(),
            lease_duration: Duration::from_millis(lease_ms),
            retry_period: Duration::from_millis(lease_ms / 5),
        }
    }

    #[tokio::test]
    async fn only_one_candidate_wins_and_the_other_takes_over_after_expiry() {
        let fake = FakeApi::new();
        let a = LeaderElector::new(fake.client(), &cfg("a", 1000));
        let b = LeaderElector::new(fake.client(), &cfg("b", 1000));
        assert!(a.try_acquire_or_renew().await.expect("round"));
        assert!(!b.try_acquire_or_renew().await.expect("round"));
        assert!(a.try_acquire_or_renew().await.expect("renew"));
        // b saw a's latest renewal just now; it is not expired yet.
        assert!(!b.try_acquire_or_renew().await.expect("round"));
        // Lease durations are whole seconds on the wire; wait past one second without renewals.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(
            b.try_acquire_or_renew().await.expect("round"),
            "b takes over an expired lease"
        );
        assert!(
            !a.try_acquire_or_renew().await.expect("round"),
            "a sees b holding it"
        );
        let lease = fake
            .get(&lease_path("kube-system", "vnode-virtual-kubelet"))
            .expect("lease");
        assert_eq!(lease["spec"]["holderIdentity"], "b");
        assert_eq!(lease["spec"]["leaseTransitions"], 1);
    }

    #[tokio::test]
    async fn release_hands_over_immediately() {
        let fake = FakeApi::new();
        let a = LeaderElector::new(fake.client(), &cfg("a", 10_000));
        let b = LeaderElector::new(fake.client(), &cfg("b", 10_000));
        assert!(a.try_acquire_or_renew().await.expect("round"));
        a.release().await.expect("release");
        assert!(b.try_acquire_or_renew().await.expect("round"));
    }

    #[tokio::test]
    async fn a_stale_update_loses_the_race() {
        let fake = FakeApi::new();
        let a = LeaderElector::new(fake.client(), &cfg("a", 10_000));
        assert!(a.try_acquire_or_renew().await.expect("round"));
        // Every update conflicts, as if another candidate wrote in between.
        fake.set_handler(|req| (req.method == http::Method::PUT).then(|| status(409, "Conflict")));
        assert!(!a.try_acquire_or_renew().await.expect("round"));
    }

    #[tokio::test]
    async fn run_publishes_leadership_and_a_standby_takes_over_when_the_leader_stops() {
        let fake = FakeApi::new();
        let (a_tx, mut a_rx) = watch::channel(false);
        let (b_tx, mut b_rx) = watch::channel(false);
        let a_token = CancellationToken::new();
        let b_token = CancellationToken::new();
        let a = tokio::spawn(
            LeaderElector::new(fake.client(), &cfg("a", 1000)).run(a_tx, a_token.clone()),
        );
        tokio::time::timeout(Duration::from_secs(2), a_rx.wait_for(|l| *l))
            .await
            .expect("a leads")
            .expect("open");
        let b = tokio::spawn(
            LeaderElector::new(fake.client(), &cfg("b", 1000)).run(b_tx, b_token.clone()),
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!*b_rx.borrow(), "b must not lead while a renews");
        // a shuts down cleanly: releases, b takes over well within the lease duration.
        a_token.cancel();
        a.await.expect("a stops");
        assert!(!*a_rx.borrow());
        tokio::time::timeout(Duration::from_secs(2), b_rx.wait_for(|l| *l))
            .await
            .expect("b leads")
            .expect("open");
        b_token.cancel();
        b.await.expect("b stops");
    }
}
