//! A keyed work queue: work for one pod is serialised (never two workers on the same key),
//! work across pods runs concurrently up to a bound, and events that arrive while a key is
//! being worked on coalesce into one more run afterwards (nothing is lost, nothing piles up).
//!
//! Two lanes: a key queued in [`Lane::Create`] (a pod that has no container group yet, the
//! work whose latency the daemon is measured by) gets the next free worker before any key
//! waiting in [`Lane::Normal`] (deletions, retries, re-checks). A worker slot is taken
//! first and the key chosen afterwards, so a create never waits behind a key that was
//! picked while all workers were busy. Within a lane keys run in FIFO order.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Which lane a key waits in (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lane {
    /// Everything else: deletions, retries, re-checks.
    Normal,
    /// A pod without a container group yet: served before [`Lane::Normal`].
    Create,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyState {
    /// Waiting in a lane's channel.
    Queued,
    /// A worker has it.
    Running,
    /// A worker has it and another event arrived: run again (in that lane) when it finishes.
    RunningDirty(Lane),
}

/// The queue. Clone-cheap handle (`Arc` inside).
#[derive(Clone)]
pub struct KeyedQueue {
    states: Arc<Mutex<HashMap<String, KeyState>>>,
    create: mpsc::UnboundedSender<String>,
    normal: mpsc::UnboundedSender<String>,
    depth: prometheus_client::metrics::gauge::Gauge,
}

/// The receiving half, consumed by [`KeyedQueue::run`].
pub struct QueueReceiver {
    create: mpsc::UnboundedReceiver<String>,
    normal: mpsc::UnboundedReceiver<String>,
}

impl KeyedQueue {
    /// A queue and its receiver; `depth` tracks keys waiting for a worker.
    pub fn new(depth: prometheus_client::metrics::gauge::Gauge) -> (Self, QueueReceiver) {
        let (create_tx, create_rx) = mpsc::unbounded_channel();
        let (normal_tx, normal_rx) = mpsc::unbounded_channel();
        (
            Self {
                states: Arc::default(),
                create: create_tx,
                normal: normal_tx,
                depth,
            },
            QueueReceiver {
                create: create_rx,
                normal: normal_rx,
            },
        )
    }

    /// Schedules `key` in [`Lane::Normal`]. Idempotent while queued; marks a running key
    /// dirty.
    pub fn enqueue(&self, key: &str) {
        self.enqueue_in(key, Lane::Normal);
    }

    /// Schedules `key` in `lane`. Idempotent while queued (a key already waiting stays in
    /// its lane); marks a running key dirty, to run again in the more urgent of the lanes
    /// asked for.
    pub fn enqueue_in(&self, key: &str, lane: Lane) {
        let mut states = self.states.lock();
        match states.get(key).copied() {
            None => {
                states.insert(key.to_string(), KeyState::Queued);
                self.send(key.to_string(), lane);
            }
            Some(KeyState::Running) => {
                states.insert(key.to_string(), KeyState::RunningDirty(lane));
            }
            Some(KeyState::RunningDirty(earlier)) => {
                states.insert(key.to_string(), KeyState::RunningDirty(earlier.max(lane)));
            }
            Some(KeyState::Queued) => {}
        }
    }

    fn send(&self, key: String, lane: Lane) {
        self.depth.inc();
        let tx = match lane {
            Lane::Create => &self.create,
            Lane::Normal => &self.normal,
        };
        // The receiver only goes away at shutdown, when dropping work is intended.
        let _ = tx.send(key);
    }

    /// Schedules `key` after `delay` (backoff, periodic re-checks).
    pub fn enqueue_after(&self, key: String, delay: Duration, token: CancellationToken) {
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                biased;
                () = token.cancelled() => {}
                () = tokio::time::sleep(delay) => queue.enqueue(&key),
            }
        });
    }

    fn start(&self, key: &str) {
        self.depth.dec();
        self.states
            .lock()
            .insert(key.to_string(), KeyState::Running);
    }

    fn finish(&self, key: &str) {
        let mut states = self.states.lock();
        match states.get(key).copied() {
            Some(KeyState::RunningDirty(lane)) => {
                states.insert(key.to_string(), KeyState::Queued);
                self.send(key.to_string(), lane);
            }
            _ => {
                states.remove(key);
            }
        }
    }

    /// Runs `work(key)` for each scheduled key with at most `concurrency` at once, until
    /// `token` is cancelled; then waits for running work to finish. A free worker slot
    /// takes the oldest [`Lane::Create`] key, else the oldest [`Lane::Normal`] one.
    pub async fn run<F, Fut>(
        self,
        mut rx: QueueReceiver,
        concurrency: usize,
        token: CancellationToken,
        work: F,
    ) where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let work = Arc::new(work);
        let tracker = TaskTracker::new();
        loop {
            // The slot first, then the key: a create that arrives while every worker is busy
            // must not find a normal key already picked ahead of it.
            let permit = tokio::select! {
                biased;
                () = token.cancelled() => break,
                p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            let key = tokio::select! {
                biased;
                () = token.cancelled() => break,
                key = rx.create.recv() => match key { Some(k) => k, None => break },
                key = rx.normal.recv() => match key { Some(k) => k, None => break },
            };
            self.start(&key);
            let queue = self.clone();
            let work = work.clone();
            tracker.spawn(async move {
                work(key.clone()).await;
                queue.finish(&key);
                drop(permit);
            });
        }
        tracker.close();
        tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn same_key_is_serialised_and_events_coalesce() {
        let (q, rx) = KeyedQueue::new(Default::default());
        let running = Arc::new(AtomicUsize::new(0));
        let runs = Arc::new(AtomicUsize::new(0));
        let overlap = Arc::new(AtomicUsize::new(0));
        let token = CancellationToken::new();
        let (r, n, o) = (running.clone(), runs.clone(), overlap.clone());
        let task = tokio::spawn(q.clone().run(rx, 8, token.clone(), move |_key| {
            let (r, n, o) = (r.clone(), n.clone(), o.clone());
            async move {
                if r.fetch_add(1, Ordering::SeqCst) > 0 {
                    o.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
                n.fetch_add(1, Ordering::SeqCst);
                r.fetch_sub(1, Ordering::SeqCst);
            }
        }));
        q.enqueue("ns/a");
        tokio::time::sleep(Duration::from_millis(10)).await;
        // Three events while running: exactly one more run.
        q.enqueue("ns/a");
        q.enqueue("ns/a");
        q.enqueue("ns/a");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(overlap.load(Ordering::SeqCst), 0);
        token.cancel();
        task.await.expect("stops");
    }

    /// One worker; `ns/busy` holds it until released, while other keys queue behind it.
    /// Returns the order in which keys started.
    async fn order_behind_a_busy_worker(queue_more: impl FnOnce(&KeyedQueue)) -> Vec<String> {
        let (q, rx) = KeyedQueue::new(Default::default());
        let order = Arc::new(Mutex::new(Vec::<String>::new()));
        let release = Arc::new(tokio::sync::Notify::new());
        let token = CancellationToken::new();
        let (o, r) = (order.clone(), release.clone());
        let task = tokio::spawn(q.clone().run(rx, 1, token.clone(), move |key| {
            let (o, r) = (o.clone(), r.clone());
            async move {
                let first_run = {
                    let mut o = o.lock();
                    o.push(key.clone());
                    o.iter().filter(|k| **k == key).count() == 1
                };
                if key == "ns/busy" && first_run {
                    r.notified().await;
                }
            }
        }));
        q.enqueue("ns/busy");
        tokio::time::timeout(Duration::from_secs(5), async {
            while order.lock().is_empty() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("the busy key starts");
        queue_more(&q);
        release.notify_one();
        let started = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let o = order.lock().clone();
                if q.states.lock().is_empty() {
                    return o;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("every key runs");
        token.cancel();
        task.await.expect("stops");
        started
    }

    #[tokio::test]
    async fn create_lane_keys_start_before_normal_keys_that_waited_longer() {
        let started = order_behind_a_busy_worker(|q| {
            q.enqueue("ns/delete-1");
            q.enqueue_in("ns/new-1", Lane::Create);
            q.enqueue("ns/delete-2");
            q.enqueue_in("ns/new-2", Lane::Create);
        })
        .await;
        assert_eq!(
            started,
            [
                "ns/busy",
                "ns/new-1",
                "ns/new-2",
                "ns/delete-1",
                "ns/delete-2"
            ]
        );
    }

    #[tokio::test]
    async fn a_running_key_asked_for_in_both_lanes_runs_again_once_in_the_create_lane() {
        let started = order_behind_a_busy_worker(|q| {
            q.enqueue("ns/delete-1");
            // The busy key gets two more events while it runs: one more run, urgent.
            q.enqueue("ns/busy");
            q.enqueue_in("ns/busy", Lane::Create);
            q.enqueue("ns/busy");
            // Already queued: stays where it is, is not run twice.
            q.enqueue_in("ns/delete-1", Lane::Create);
        })
        .await;
        assert_eq!(started, ["ns/busy", "ns/busy", "ns/delete-1"]);
    }

    #[tokio::test]
    async fn different_keys_run_concurrently_up_to_the_bound() {
        let (q, rx) = KeyedQueue::new(Default::default());
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let token = CancellationToken::new();
        let (r, p, d) = (running.clone(), peak.clone(), done.clone());
        let task = tokio::spawn(q.clone().run(rx, 3, token.clone(), move |_key| {
            let (r, p, d) = (r.clone(), p.clone(), d.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                d.fetch_add(1, Ordering::SeqCst);
            }
        }));
        for i in 0..12 {
            q.enqueue(&format!("ns/p{i}"));
        }
        tokio::time::timeout(Duration::from_secs(2), async {
            while done.load(Ordering::SeqCst) < 12 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("all done");
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        token.cancel();
        task.await.expect("stops");
    }
}
