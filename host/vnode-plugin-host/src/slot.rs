//! The active version of one plugin kind, swapped atomically on hot reload.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::contract::{
    ContainerGroupRequest, Decision, PlacementContext, PodView, TranslateError, TranslateInput,
};
use crate::error::{CallError, PluginError};
use crate::identity::{PluginIdentity, PluginKind};
use crate::plugin::{Decided, LoadedPlugin};

/// A reload candidate that failed validation; the previous version kept serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedReload {
    /// When it was refused.
    pub at: SystemTime,
    /// The file that was read.
    pub file: PathBuf,
    /// Hex sha256 of the refused bytes (`None` if they could not be read).
    pub sha256: Option<String>,
    /// Why, for people.
    pub reason: String,
}

/// What subscribers see: the active version and the last refusal.
#[derive(Debug, Clone)]
pub struct SlotStatus {
    /// The version serving now.
    pub active: Arc<PluginIdentity>,
    /// Increments on every swap (0 for the first version).
    pub generation: u64,
    /// The last refused reload, until a later reload succeeds.
    pub last_refused: Option<RefusedReload>,
}

/// One plugin kind's active version. Decisions load the current version once and keep that
/// `Arc` for the whole call, so a swap never affects a call in flight, and the old version is
/// freed when its last call finishes.
pub struct PluginSlot {
    kind: PluginKind,
    current: ArcSwap<LoadedPlugin>,
    status: watch::Sender<SlotStatus>,
}

impl std::fmt::Debug for PluginSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginSlot")
            .field("kind", &self.kind)
            .field("active", &self.current.load().identity())
            .finish()
    }
}

impl PluginSlot {
    /// A slot serving `initial`.
    pub fn new(initial: Arc<LoadedPlugin>) -> PluginSlot {
        let status = SlotStatus {
            active: initial.identity().clone(),
            generation: 0,
            last_refused: None,
        };
        PluginSlot {
            kind: initial.kind(),
            current: ArcSwap::new(initial),
            status: watch::Sender::new(status),
        }
    }

    /// Placement or translator.
    pub fn kind(&self) -> PluginKind {
        self.kind
    }

    /// The version serving now (an `Arc` the caller may keep as long as it needs).
    pub fn current(&self) -> Arc<LoadedPlugin> {
        self.current.load_full()
    }

    /// Makes `next` the active version and returns the previous one. Refuses a plugin of the
    /// wrong kind.
    pub fn swap(&self, next: Arc<LoadedPlugin>) -> Result<Arc<LoadedPlugin>, PluginError> {
        if next.kind() != self.kind {
            return Err(PluginError::WrongWorld {
                expected: self.kind,
                expected_world: self.kind.world(),
                found: format!("is a {} plugin", next.kind()),
            });
        }
        let identity = next.identity().clone();
        let previous = self.current.swap(next);
        tracing::info!(
            kind = %self.kind,
            plugin = %identity,
            previous = %previous.identity(),
            "plugin version now serving"
        );
        self.status.send_modify(|s| {
            s.active = identity;
            s.generation += 1;
            s.last_refused = None;
        });
        Ok(previous)
    }

    /// Records a refused reload (the active version keeps serving) and tells subscribers.
    pub fn record_refusal(&self, refusal: RefusedReload) {
        tracing::warn!(
            kind = %self.kind,
            file = %refusal.file.display(),
            sha256 = refusal.sha256.as_deref().unwrap_or("-"),
            reason = %refusal.reason,
            serving = %self.current.load().identity(),
            "plugin reload refused; the running version keeps serving"
        );
        self.status.send_modify(|s| s.last_refused = Some(refusal));
    }

    /// Active version and refusals, as they change (for the node status and metrics).
    pub fn subscribe(&self) -> watch::Receiver<SlotStatus> {
        self.status.subscribe()
    }

    /// The current status.
    pub fn status(&self) -> SlotStatus {
        self.status.borrow().clone()
    }

    /// Placement for one pod, on a blocking thread behind the engine's concurrency bound.
    pub async fn place(
        &self,
        pod: PodView,
        context: PlacementContext,
    ) -> Result<Decided<Decision>, CallError> {
        let plugin = self.current();
        let identity = plugin.identity().clone();
        let permit = acquire(&plugin).await?;
        let result = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            plugin.place_blocking(&pod, context)
        })
        .await;
        join(result, identity)
    }

    /// Translation for one pod, on a blocking thread behind the engine's concurrency bound.
    pub async fn translate(
        &self,
        input: TranslateInput,
    ) -> Result<Decided<Result<ContainerGroupRequest, TranslateError>>, CallError> {
        let plugin = self.current();
        let identity = plugin.identity().clone();
        let permit = acquire(&plugin).await?;
        let result = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            plugin.translate_blocking(input)
        })
        .await;
        join(result, identity)
    }

    /// Placement on the current thread (for callers already on a blocking thread).
    pub fn place_blocking(
        &self,
        pod: &PodView,
        context: PlacementContext,
    ) -> Result<Decided<Decision>, CallError> {
        self.current().place_blocking(pod, context)
    }

    /// Translation on the current thread.
    pub fn translate_blocking(
        &self,
        input: TranslateInput,
    ) -> Result<Decided<Result<ContainerGroupRequest, TranslateError>>, CallError> {
        self.current().translate_blocking(input)
    }
}

async fn acquire(
    plugin: &Arc<LoadedPlugin>,
) -> Result<tokio::sync::OwnedSemaphorePermit, CallError> {
    plugin
        .engine()
        .calls
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| CallError {
            plugin: plugin.identity().clone(),
            error: PluginError::ShuttingDown,
        })
}

fn join<T>(
    result: Result<Result<T, CallError>, tokio::task::JoinError>,
    plugin: Arc<PluginIdentity>,
) -> Result<T, CallError> {
    result.unwrap_or_else(|e| {
        Err(CallError {
            plugin,
            error: PluginError::Internal(format!("plugin call task failed: {e}")),
        })
    })
}
