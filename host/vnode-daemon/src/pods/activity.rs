//! When the pod controller last had a pod waiting for its container group, so background
//! work that shares the daemon's cores and the API server (the observer's status writes)
//! can step aside while pods are being created.
//!
//! Why: at 500 pods/s offered on two cores, the observer's 5 s status poll found ~2,500
//! newly Running groups and described and wrote them 4 × 20 at a time. Those 80 writes and
//! their describes queued in front of the create path on the same tokio workers and API
//! server, and the pods bound during the burst waited tens of milliseconds (up to ~500 ms
//! when the machine was busy) for their CreateContainerGroup. One chunk at a time while
//! creates are arriving kept the status latency at that rate (the poll interval dominates
//! it) and removed that tail.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Clone-cheap handle: the controller [`mark`](Self::mark)s, others ask
/// [`recent`](Self::recent).
#[derive(Clone, Debug)]
pub struct CreateActivity {
    base: Instant,
    /// Microseconds after `base` of the last mark, plus one (0: never).
    last_us: Arc<AtomicU64>,
}

impl Default for CreateActivity {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            last_us: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl CreateActivity {
    /// A pod was queued for its container group.
    pub fn mark(&self) {
        let us = u64::try_from(self.base.elapsed().as_micros()).unwrap_or(u64::MAX - 1);
        self.last_us.store(us + 1, Ordering::Relaxed);
    }

    /// Whether a pod was queued for its container group within the last `within`.
    pub fn recent(&self, within: Duration) -> bool {
        let last = self.last_us.load(Ordering::Relaxed);
        if last == 0 {
            return false;
        }
        let now = u64::try_from(self.base.elapsed().as_micros()).unwrap_or(u64::MAX);
        now.saturating_sub(last - 1) < u64::try_from(within.as_micros()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn recent_only_within_the_window_after_a_mark() {
        let activity = CreateActivity::default();
        let window = Duration::from_secs(1);
        assert!(!activity.recent(window), "never marked");
        tokio::time::advance(Duration::from_secs(5)).await;
        let seen_by_others = activity.clone();
        activity.mark();
        assert!(seen_by_others.recent(window), "clones share the mark");
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(seen_by_others.recent(window));
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(!seen_by_others.recent(window), "the window has passed");
    }
}
