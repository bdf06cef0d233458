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
use crate::steps::{NoSteps, Step, StepObserver, StepTimes};

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

    /// Placement for one pod, behind the engine's concurrency bound. The Wasm runs on the
    /// calling worker thread while the version is fast (see [`run_blocking`]), so a decision
    /// costs no thread hand-off.
    pub async fn place(
        &self,
        pod: PodView,
        context: PlacementContext,
    ) -> Result<Decided<Decision>, CallError> {
        let (decided, NoSteps) = self.place_observed(pod, context, NoSteps).await?;
        Ok(decided)
    }

    /// [`PluginSlot::place`] with a timestamp at the end of each step (benchmark support:
    /// `vnode bench plugins --steps`; see [`crate::steps`]).
    pub async fn place_with_steps(
        &self,
        pod: PodView,
        context: PlacementContext,
    ) -> Result<(Decided<Decision>, StepTimes), CallError> {
        self.place_observed(pod, context, StepTimes::start()).await
    }

    async fn place_observed<O: StepObserver + Send + 'static>(
        &self,
        pod: PodView,
        context: PlacementContext,
        mut steps: O,
    ) -> Result<(Decided<Decision>, O), CallError> {
        let plugin = self.current();
        let permit = acquire(&plugin).await?;
        run_blocking(plugin, move |plugin| {
            steps.mark(Step::Entered);
            let decided = plugin.place_observed(&pod, context, &mut steps);
            drop(pod);
            drop(permit);
            steps.mark(Step::Returned);
            decided.map(|d| (d, steps))
        })
        .await
    }

    /// Translation for one pod, behind the engine's concurrency bound, on the calling worker
    /// thread like [`PluginSlot::place`].
    pub async fn translate(
        &self,
        input: TranslateInput,
    ) -> Result<Decided<Result<ContainerGroupRequest, TranslateError>>, CallError> {
        let (decided, NoSteps) = self.translate_observed(input, NoSteps).await?;
        Ok(decided)
    }

    /// [`PluginSlot::translate`] with a timestamp at the end of each step (benchmark
    /// support, like [`PluginSlot::place_with_steps`]).
    pub async fn translate_with_steps(
        &self,
        input: TranslateInput,
    ) -> Result<
        (
            Decided<Result<ContainerGroupRequest, TranslateError>>,
            StepTimes,
        ),
        CallError,
    > {
        self.translate_observed(input, StepTimes::start()).await
    }

    async fn translate_observed<O: StepObserver + Send + 'static>(
        &self,
        input: TranslateInput,
        mut steps: O,
    ) -> Result<(Decided<Result<ContainerGroupRequest, TranslateError>>, O), CallError> {
        let plugin = self.current();
        let permit = acquire(&plugin).await?;
        run_blocking(plugin, move |plugin| {
            steps.mark(Step::Entered);
            // The input is dropped inside (the translator's input is moved in).
            let decided = plugin.translate_observed(input, &mut steps);
            drop(permit);
            steps.mark(Step::Returned);
            decided.map(|d| (d, steps))
        })
        .await
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

/// Runs a plugin call from async code.
///
/// A version whose calls have each used at most [`crate::plugin::INLINE_CALL_BUDGET`] of CPU
/// (1 ms; the shipped plugins take tens of µs) runs right here on the runtime worker, like any other
/// short piece of synchronous work: no thread hand-off at all. Measured on this 2-vCPU VM,
/// `block_in_place` (which hands the worker's scheduler core to another thread on every call)
/// cost more than the plugin call itself; `spawn_blocking` and back costs two cross-thread
/// wake-ups. A version that once ran longer (a slow or hostile plugin, up to the call deadline)
/// runs its later calls under `block_in_place` on a multi-thread runtime (tokio moves this
/// worker's other tasks elsewhere), or on `spawn_blocking` otherwise, so it can stall a worker
/// at most once, for at most one deadline.
async fn run_blocking<T: Send + 'static>(
    plugin: Arc<LoadedPlugin>,
    call: impl FnOnce(&LoadedPlugin) -> Result<T, CallError> + Send + 'static,
) -> Result<T, CallError> {
    if plugin.runs_fast() {
        return call(&plugin);
    }
    let in_place = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if in_place {
        return tokio::task::block_in_place(|| call(&plugin));
    }
    let identity = plugin.identity().clone();
    let result = tokio::task::spawn_blocking(move || call(&plugin)).await;
    join(result, identity)
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
