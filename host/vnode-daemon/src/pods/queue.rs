//! A keyed work queue: work for one pod is serialised (never two workers on the same key),
//! work across pods runs concurrently up to a bound, and events that arrive while a key is
//! being worked on coalesce into one more run afterwards (nothing is lost, nothing piles up).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyState {
    /// Waiting in the channel.
    Queued,
    /// A worker has it.
    Running,
    /// A worker has it and another event arrived: run again when it finishes.
    RunningDirty,
}

/// The queue. Clone-cheap handle (`Arc` inside).
#[derive(Clone)]
pub struct KeyedQueue {
    states: Arc<Mutex<HashMap<String, KeyState>>>,
    ready: mpsc::UnboundedSender<String>,
    depth: prometheus_client::metrics::gauge::Gauge,
}

/// The receiving half, consumed by [`KeyedQueue::run`].
pub struct QueueReceiver(mpsc::UnboundedReceiver<String>);

impl KeyedQueue {
    /// A queue and its receiver; `depth` tracks keys waiting for a worker.
    pub fn new(depth: prometheus_client::metrics::gauge::Gauge) -> (Self, QueueReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                states: Arc::default(),
                ready: tx,
                depth,
            },
            QueueReceiver(rx),
        )
    }

    /// Schedules `key`. Idempotent while queued; marks a running key dirty.
    pub fn enqueue(&self, key: &str) {
        let mut states = self.states.lock();
        match states.get(key).copied() {
            None => {
                states.insert(key.to_string(), KeyState::Queued);
                self.depth.inc();
                // The receiver only goes away at shutdown, when dropping work is intended.
                let _ = self.ready.send(key.to_string());
            }
            Some(KeyState::Running) => {
                states.insert(key.to_string(), KeyState::RunningDirty);
            }
            Some(KeyState::Queued | KeyState::RunningDirty) => {}
        }
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
            Some(KeyState::RunningDirty) => {
                states.insert(key.to_string(), KeyState::Queued);
                self.depth.inc();
                let _ = self.ready.send(key.to_string());
            }
            _ => {
                states.remove(key);
            }
        }
    }

    /// Runs `work(key)` for each scheduled key with at most `concurrency` at once, until
    /// `token` is cancelled; then waits for running work to finish.
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
            let key = tokio::select! {
                biased;
                () = token.cancelled() => break,
                key = rx.0.recv() => match key { Some(k) => k, None => break },
            };
            let permit = tokio::select! {
                biased;
                () = token.cancelled() => break,
                p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
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
