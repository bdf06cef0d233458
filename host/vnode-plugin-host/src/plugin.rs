//! A loaded, validated plugin version and the calls into it.
//!
//! Every decision runs in a fresh instance that is used exactly once, so nothing leaks from one
//! pod to the next and a trap can never poison a later call. To keep instantiation off the
//! decision's critical path, a background thread per plugin version keeps a few instances
//! ready ([`RuntimeConfig::warm_instances`](crate::RuntimeConfig)); each was warmed by one
//! call to the pure `info` export (which pays for the guest's allocator start-up and first page
//! faults) and is then handed to exactly one decision. The same thread also frees the spent
//! stores: freeing an instance resets its pooled memory slot (a `PAGEMAP_SCAN` and a copy of
//! the dirtied pages, ~8 µs), which the decision need not wait for. A decision parks its spent
//! store and wakes the thread only when a burst nearly empties the pool; otherwise the thread
//! finds the work on its next poll (every 2 ms while calls arrive) and does it in batches, once
//! half the pool is used (or the calls stop), so neither the wake-up nor the slot work lands
//! in the middle of the pod's next call, and a round that starts on cold caches (the thread
//! slept) does several items. The thread runs at the lowest priority (nice 19): it never
//! preempts a decision.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use parking_lot::Mutex;
use wasmtime::Store;

use crate::contract::{
    ContainerGroupRequest, Decision, PlacementContext, PodView, TranslateError, TranslateInput,
};
use crate::contract::{PlacementInstance, PlacementPre, TranslatorInstance, TranslatorPre};
use crate::engine::{PluginEngine, deadline_ticks};
use crate::error::{CallError, PluginError};
use crate::identity::{PluginIdentity, PluginKind};
use crate::spec::PluginLimits;
use crate::state::HostState;
use crate::steps::{NoSteps, Step, StepObserver};

/// The pre-linked component of one world.
#[derive(Clone)]
pub(crate) enum WorldPre {
    Placement(PlacementPre),
    Translator(TranslatorPre),
}

/// An instantiated component of one world.
pub(crate) enum Bound {
    Placement(PlacementInstance),
    Translator(TranslatorInstance),
}

/// A fresh store with its instance, ready for exactly one decision.
pub(crate) struct Ready {
    pub(crate) store: Store<HostState>,
    pub(crate) bound: Bound,
}

/// A decision's result together with the plugin version that made it.
#[derive(Debug, Clone)]
pub struct Decided<T> {
    /// The plugin's answer.
    pub value: T,
    /// Which plugin version answered.
    pub plugin: Arc<PluginIdentity>,
}

/// One loaded, validated plugin version. Cheap to share (`Arc`); calls in flight keep the
/// version they started on alive after a hot reload swapped it out.
pub struct LoadedPlugin {
    identity: Arc<PluginIdentity>,
    config: String,
    engine: Arc<PluginEngine>,
    pre: WorldPre,
    /// This version's own call deadline and memory limit.
    limits: PluginLimits,
    warm: Option<WarmPool>,
    /// Set once a call of this version used more CPU than [`INLINE_CALL_BUDGET`] (or timed out):
    /// from then on the async API runs its calls off the runtime's worker threads.
    slow: AtomicBool,
    /// Decisions that found no prepared instance and instantiated on their own path.
    inline_instantiations: AtomicU64,
}

/// The async API runs a call directly on the runtime worker while every call of the version
/// has used at most this much CPU; a version that once used more (or timed out) runs its later
/// calls on a blocking thread instead (see [`crate::PluginSlot::place`]).
pub(crate) const INLINE_CALL_BUDGET: Duration = Duration::from_millis(1);

/// The CPU time the calling thread spent in one call: what decides whether a version may keep
/// running on a runtime worker. Wall-clock time would also count the time the thread was
/// descheduled, and on a loaded machine one preempted call of a 50 µs plugin would send every
/// later call of that version down the slower blocking path. A call that hits its deadline has
/// spent that deadline on the CPU (see [`deadline_verdict`]), so hostile versions still leave
/// the worker.
///
/// Reading a thread's CPU clock is a system call (the vDSO serves only wall clocks), so the
/// end of a call reads it only when it must: a call that took at most the budget in
/// wall-clock time cannot have used more of the CPU ([`CallClock::exceeded`]).
#[derive(Clone, Copy)]
pub(crate) struct CallClock {
    cpu: Duration,
    wall: std::time::Instant,
}

impl CallClock {
    pub(crate) fn start() -> CallClock {
        CallClock {
            cpu: thread_cpu_time(),
            wall: std::time::Instant::now(),
        }
    }

    /// CPU time this thread used since the start.
    fn used(&self) -> Duration {
        thread_cpu_time().saturating_sub(self.cpu)
    }

    /// Whether this thread used more than `budget` of CPU since the start.
    fn exceeded(&self, budget: Duration) -> bool {
        self.wall.elapsed() > budget && self.used() > budget
    }
}

fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// The background worker's two queues: instances prepared for decisions, and spent stores to
/// free off the decision path.
///
/// A decision does not wake the worker unless the pool nearly runs out: waking a sleeping thread is
/// a futex syscall plus an inter-processor interrupt (a VM exit on a virtual machine), and
/// the woken worker's slot resets and instantiations (`mprotect`, `PAGEMAP_SCAN`, TLB
/// shoot-downs) then ran on the other core while the pod's next call was running. Instead
/// the worker looks every [`ACTIVE_POLL`] while calls keep coming and every [`IDLE_POLL`]
/// once they stop, and works in batches (see `start_warm_pool_with`). Measured with `vnode
/// bench plugins --profile daemon` (paced corpus, 2 vCPUs): one instance per poll cost the
/// worker ≈ 130–140 µs of CPU per pod, half-pool batches ≈ 100 µs.
struct WarmPool {
    ready: Mutex<Receiver<Ready>>,
    /// Instances in `ready` (the worker tops up to `warm_instances`).
    available: Arc<AtomicUsize>,
    /// Spent stores waiting to be freed by the worker.
    spent: Arc<Mutex<Vec<Store<HostState>>>>,
    /// Rung (never blocking) when the pool is nearly empty or spent stores pile up.
    doorbell: SyncSender<()>,
    /// `warm_instances`.
    size: usize,
}

/// How often the warm worker looks for work while calls are arriving.
const ACTIVE_POLL: Duration = Duration::from_millis(2);
/// How often it looks once the version has been idle for a poll.
const IDLE_POLL: Duration = Duration::from_millis(50);
/// First pause of the warm worker after it failed to prepare an instance.
const FIRST_RETRY: Duration = Duration::from_millis(10);
/// Longest pause between its retries (a version whose instances keep failing costs at most
/// one attempt per second).
const MAX_RETRY: Duration = Duration::from_secs(1);
/// Spent stores the worker holds before a decision frees its own store inline (bounds the
/// memory slots parked between polls).
const MAX_SPENT: usize = 32;

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    pub(crate) fn new(
        identity: Arc<PluginIdentity>,
        config: String,
        engine: Arc<PluginEngine>,
        pre: WorldPre,
        limits: PluginLimits,
    ) -> LoadedPlugin {
        let warm = match engine.config.warm_instances {
            0 => None,
            n => start_warm_pool(n, engine.clone(), pre.clone(), identity.clone(), limits),
        };
        LoadedPlugin {
            identity,
            config,
            engine,
            pre,
            limits,
            warm,
            slow: AtomicBool::new(false),
            inline_instantiations: AtomicU64::new(0),
        }
    }

    /// Whether the async API still runs this version's calls directly on the runtime worker:
    /// true until one of its calls uses more than 1 ms of CPU (or times out).
    pub fn runs_fast(&self) -> bool {
        !self.slow.load(Ordering::Relaxed)
    }

    /// Forgets the call times so far. The loader's smoke decision is a version's first,
    /// cold call (fresh linear memory, lazy initialisation in the guest) and on a busy
    /// machine easily exceeds the inline budget; it must not decide how every later call
    /// runs.
    pub(crate) fn forget_call_times(&self) {
        self.slow.store(false, Ordering::Relaxed);
    }

    /// Records how long a call took (see [`LoadedPlugin::runs_fast`]).
    fn note_call_time<T>(&self, started: CallClock, outcome: &Result<T, PluginError>) {
        let timed_out = matches!(outcome, Err(PluginError::Timeout { .. }));
        if (timed_out || started.exceeded(INLINE_CALL_BUDGET))
            && !self.slow.swap(true, Ordering::Relaxed)
        {
            tracing::debug!(plugin = %self.identity, "plugin call exceeded the inline budget; later async calls run on a blocking thread");
        }
    }

    /// Frees a spent store: on the background worker when there is one, else here.
    fn retire(&self, store: Store<HostState>) {
        let Some(warm) = &self.warm else { return };
        let parked = {
            let mut spent = warm.spent.lock();
            if spent.len() >= MAX_SPENT {
                None
            } else {
                spent.push(store);
                Some(spent.len())
            }
        };
        match parked {
            // The worker's next poll frees it; ring only in a burst that is emptying the pool.
            Some(n) if n < MAX_SPENT / 2 && !warm.nearly_empty() => {}
            Some(_) => warm.ring(),
            // Full: free it here (dropped on return) and wake the worker.
            None => warm.ring(),
        }
    }

    /// Decisions so far that found no prepared instance (the warm pool was empty, or there is
    /// none) and instantiated on their own path: a diagnostic for the warm pool's sizing.
    pub fn inline_instantiations(&self) -> u64 {
        self.inline_instantiations.load(Ordering::Relaxed)
    }

    /// Name, version, hash … of this version.
    pub fn identity(&self) -> &Arc<PluginIdentity> {
        &self.identity
    }

    /// The engine this version runs on.
    pub(crate) fn engine(&self) -> &Arc<PluginEngine> {
        &self.engine
    }

    /// Placement or translator.
    pub fn kind(&self) -> PluginKind {
        self.identity.kind
    }

    /// The configuration string this version was initialised with.
    pub fn config(&self) -> &str {
        &self.config
    }

    /// The call deadline and memory limit this version's calls run under.
    pub fn limits(&self) -> PluginLimits {
        self.limits
    }

    /// An instance for one decision: a prepared one if available, else a new one.
    fn take_ready(&self) -> Result<Ready, PluginError> {
        if let Some(warm) = &self.warm {
            if let Ok(ready) = warm.ready.lock().try_recv() {
                warm.available.fetch_sub(1, Ordering::Relaxed);
                return Ok(ready);
            }
            // Empty: this call instantiates inline; make sure the worker is refilling.
            warm.ring();
        }
        self.inline_instantiations.fetch_add(1, Ordering::Relaxed);
        instantiate(
            &self.engine,
            &self.pre,
            Some(self.identity.clone()),
            &self.limits,
            false,
        )
    }

    /// Benchmark support: creates `n` fresh instances (store + instantiation, no call) and
    /// returns how long each took. Not for production use.
    #[doc(hidden)]
    pub fn measure_instantiation(
        &self,
        n: usize,
        warm_up_call: bool,
    ) -> Result<Vec<std::time::Duration>, PluginError> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let started = std::time::Instant::now();
            let ready = instantiate(
                &self.engine,
                &self.pre,
                Some(self.identity.clone()),
                &self.limits,
                warm_up_call,
            )?;
            out.push(started.elapsed());
            drop(ready);
        }
        Ok(out)
    }

    /// Benchmark support: one placement decision split into its steps, `n` times, inline on
    /// this thread: `[new store (host state + WASI context), instantiate, call (lower + run +
    /// lift), drop (free the instance and reset its memory slot)]`. Not for production use.
    #[doc(hidden)]
    pub fn measure_placement_steps(
        &self,
        n: usize,
        pod: &PodView,
        context: &PlacementContext,
    ) -> Result<Vec<[std::time::Duration; 4]>, PluginError> {
        let WorldPre::Placement(pre) = &self.pre else {
            return Err(PluginError::Internal("not a placement plugin".into()));
        };
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let t0 = std::time::Instant::now();
            let mut store = new_store(&self.engine, Some(self.identity.clone()), &self.limits);
            arm_deadline(&mut store, &self.engine, &self.limits);
            let t1 = std::time::Instant::now();
            let bound = pre
                .instantiate(&mut store)
                .map_err(|e| classify(e, &store, &self.limits))?;
            let t2 = std::time::Instant::now();
            let d = bound
                .call_place(&mut store, pod, context, &mut NoSteps)
                .map_err(|e| classify(e, &store, &self.limits))?;
            std::hint::black_box(check_decision(
                d,
                self.engine.config.max_placement_output_bytes,
            )?);
            let t3 = std::time::Instant::now();
            // The bindings are plain indices; freeing the store frees the instance.
            let _ = bound;
            drop(store);
            let t4 = std::time::Instant::now();
            out.push([t1 - t0, t2 - t1, t3 - t2, t4 - t3]);
        }
        Ok(out)
    }

    /// Benchmark support: the cost of the decision call alone on instances prepared ahead
    /// (in batches, with no background worker competing), as the daemon's warm path sees it.
    /// Pass the pod and context for a placement plugin, the input for a translator. Not for
    /// production use.
    #[doc(hidden)]
    pub fn measure_prepared_calls(
        &self,
        n: usize,
        placement: Option<(&PodView, &PlacementContext)>,
        translation: Option<&TranslateInput>,
    ) -> Result<Vec<std::time::Duration>, PluginError> {
        self.measure_prepared_calls_around(n, placement, translation, &mut |_| {})
    }

    /// [`LoadedPlugin::measure_prepared_calls`], calling `around(true)` before each call and
    /// `around(false)` after it (a profiler can record just the calls, without the
    /// instantiations that prepare them or the frees after them). Not for production use.
    #[doc(hidden)]
    pub fn measure_prepared_calls_around(
        &self,
        n: usize,
        placement: Option<(&PodView, &PlacementContext)>,
        translation: Option<&TranslateInput>,
        around: &mut dyn FnMut(bool),
    ) -> Result<Vec<std::time::Duration>, PluginError> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let batch = (0..(n - out.len()).min(64))
                .map(|_| {
                    instantiate(
                        &self.engine,
                        &self.pre,
                        Some(self.identity.clone()),
                        &self.limits,
                        true,
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            for Ready { mut store, bound } in batch {
                around(true);
                let started = std::time::Instant::now();
                arm_deadline(&mut store, &self.engine, &self.limits);
                match (&bound, placement, translation) {
                    (Bound::Placement(b), Some((pod, ctx)), _) => {
                        let d = b
                            .call_place(&mut store, pod, ctx, &mut NoSteps)
                            .map_err(|e| classify(e, &store, &self.limits))?;
                        check_decision(d, self.engine.config.max_placement_output_bytes)?;
                    }
                    (Bound::Translator(b), _, Some(input)) => {
                        let r = b
                            .call_translate(&mut store, input, &mut NoSteps)
                            .map_err(|e| classify(e, &store, &self.limits))?;
                        if let Ok(request) = &r {
                            std::hint::black_box(crate::limits::request_size(request));
                        }
                    }
                    _ => {
                        return Err(PluginError::Internal(
                            "input does not match the plugin kind".into(),
                        ));
                    }
                }
                out.push(started.elapsed());
                around(false);
            }
        }
        Ok(out)
    }

    fn call_error(&self, error: PluginError) -> CallError {
        CallError {
            plugin: self.identity.clone(),
            error,
        }
    }

    /// Asks the placement plugin about one pod. Blocking (runs wasm on this thread): use
    /// [`crate::PluginSlot::place`] from async code. `context.config` is replaced by this
    /// version's configuration.
    pub fn place_blocking(
        &self,
        pod: &PodView,
        context: PlacementContext,
    ) -> Result<Decided<Decision>, CallError> {
        self.place_observed(pod, context, &mut NoSteps)
    }

    /// [`LoadedPlugin::place_blocking`], telling `steps` where each step ends (see
    /// [`crate::steps`]; production passes [`NoSteps`]).
    pub(crate) fn place_observed(
        &self,
        pod: &PodView,
        mut context: PlacementContext,
        steps: &mut impl StepObserver,
    ) -> Result<Decided<Decision>, CallError> {
        context.config.clone_from(&self.config);
        let Ready { mut store, bound } = self.take_ready().map_err(|e| self.call_error(e))?;
        let Bound::Placement(bindings) = bound else {
            return Err(self.call_error(PluginError::Internal(
                "placement call on a translator".into(),
            )));
        };
        steps.mark(Step::Taken);
        let started = arm_deadline(&mut store, &self.engine, &self.limits);
        steps.mark(Step::Armed);
        let decision = bindings
            .call_place(&mut store, pod, &context, steps)
            .map_err(|e| classify(e, &store, &self.limits));
        self.note_call_time(started, &decision);
        note_dropped_logs(&store, &self.identity);
        steps.mark(Step::Noted);
        self.retire(store);
        steps.mark(Step::Retired);
        let decision = decision
            .and_then(|d| check_decision(d, self.engine.config.max_placement_output_bytes))
            .map_err(|e| self.call_error(e))?;
        steps.mark(Step::Checked);
        Ok(Decided {
            value: decision,
            plugin: self.identity.clone(),
        })
    }

    /// Asks the translator for one pod's request. Blocking: use
    /// [`crate::PluginSlot::translate`] from async code. `input.config` is replaced by this
    /// version's configuration. The inner `Result` is the plugin's own verdict on the pod.
    pub fn translate_blocking(
        &self,
        input: TranslateInput,
    ) -> Result<Decided<Result<ContainerGroupRequest, TranslateError>>, CallError> {
        self.translate_observed(input, &mut NoSteps)
    }

    /// [`LoadedPlugin::translate_blocking`], telling `steps` where each step ends.
    pub(crate) fn translate_observed(
        &self,
        mut input: TranslateInput,
        steps: &mut impl StepObserver,
    ) -> Result<Decided<Result<ContainerGroupRequest, TranslateError>>, CallError> {
        input.config.clone_from(&self.config);
        let Ready { mut store, bound } = self.take_ready().map_err(|e| self.call_error(e))?;
        let Bound::Translator(bindings) = bound else {
            return Err(self.call_error(PluginError::Internal(
                "translator call on a placement plugin".into(),
            )));
        };
        steps.mark(Step::Taken);
        let started = arm_deadline(&mut store, &self.engine, &self.limits);
        steps.mark(Step::Armed);
        let result = bindings
            .call_translate(&mut store, &input, steps)
            .map_err(|e| classify(e, &store, &self.limits));
        self.note_call_time(started, &result);
        note_dropped_logs(&store, &self.identity);
        steps.mark(Step::Noted);
        self.retire(store);
        steps.mark(Step::Retired);
        let result = result.map_err(|e| self.call_error(e))?;
        if let Ok(request) = &result {
            let size = crate::limits::request_size(request);
            let limit = self.engine.config.max_translator_output_bytes;
            if size > limit {
                return Err(self.call_error(PluginError::OutputTooLarge {
                    what: "the container-group request",
                    size,
                    limit,
                }));
            }
        }
        steps.mark(Step::Checked);
        Ok(Decided {
            value: result,
            plugin: self.identity.clone(),
        })
    }
}

fn note_dropped_logs(store: &Store<HostState>, identity: &PluginIdentity) {
    let dropped = store.data().dropped_log_lines();
    if dropped > 0 {
        tracing::debug!(plugin = %identity, dropped, "plugin log lines over the per-call bound were dropped");
    }
}

/// A call may run this many times its CPU-time limit in wall-clock time before it is ended
/// anyway (see [`deadline_verdict`]).
const WALL_CLOCK_BACKSTOP_FACTOR: u32 = 10;

/// What the epoch callback does when a call reaches its epoch deadline.
#[derive(Debug, PartialEq, Eq)]
enum DeadlineVerdict {
    /// The call used its limit: end it with a timeout.
    Expired,
    /// The call has this much of its limit left (it was waiting for a CPU, not running).
    Extend(Duration),
}

/// The per-call limit is CPU time of the calling thread, not wall-clock time: on a loaded
/// machine a thread can wait tens of milliseconds for a CPU, and a wall-clock deadline then
/// failed a normal 100 µs decision (seen at load 8-10 on 2 cores, in `bench plugins`). The
/// epoch deadline only says *when to look*; a call that has not yet used `limit` of CPU gets
/// the rest. A Wasm call cannot block (its only import is bounded logging), so a call that
/// makes no progress is one that is descheduled; the wall-clock backstop still ends any call
/// after [`WALL_CLOCK_BACKSTOP_FACTOR`] × `limit`, so no call outlives that.
fn deadline_verdict(
    cpu_used: Duration,
    wall_elapsed: Duration,
    limit: Duration,
) -> DeadlineVerdict {
    if cpu_used >= limit || wall_elapsed >= limit.saturating_mul(WALL_CLOCK_BACKSTOP_FACTOR) {
        DeadlineVerdict::Expired
    } else {
        DeadlineVerdict::Extend(limit - cpu_used)
    }
}

/// A store for one instance of a version with `limits`: its host state, the memory limiter
/// and the epoch-deadline callback. The callback is installed once, here (off the decision
/// path, by the warm worker); each call only re-arms the deadline and restarts the clock the
/// callback reads ([`arm_deadline`]).
fn new_store(
    engine: &PluginEngine,
    identity: Option<Arc<PluginIdentity>>,
    limits: &PluginLimits,
) -> Store<HostState> {
    let mut store = Store::new(
        &engine.engine,
        HostState::new(identity, limits.memory_limit_bytes),
    );
    store.limiter(|s| &mut s.limiter);
    let limit = limits.call_timeout;
    // The callback keeps only the epoch tick (not the whole engine configuration).
    let tick = engine.config.epoch_tick;
    store.epoch_deadline_callback(move |store| {
        let clock = store.data().call_clock;
        match deadline_verdict(clock.used(), clock.wall.elapsed(), limit) {
            DeadlineVerdict::Expired => Err(wasmtime::Trap::Interrupt.into()),
            DeadlineVerdict::Extend(left) => Ok(wasmtime::UpdateDeadline::Continue(
                deadline_ticks(tick, left),
            )),
        }
    });
    store
}

/// Arms the per-call deadline, relative to now (never to when the store was made), on the
/// thread that makes the call: `limits.call_timeout` of this thread's CPU time (see
/// [`deadline_verdict`]; the store's callback from [`new_store`] reads the clock started
/// here). Returns the call's CPU clock (reading it is a system call, so the caller's
/// inline-budget check shares it).
fn arm_deadline(
    store: &mut Store<HostState>,
    engine: &PluginEngine,
    limits: &PluginLimits,
) -> CallClock {
    store.set_epoch_deadline(deadline_ticks(
        engine.config.epoch_tick,
        limits.call_timeout,
    ));
    let clock = CallClock::start();
    store.data_mut().call_clock = clock;
    clock
}

/// Creates a store and instantiates the component in it; with `warm_up`, also makes the
/// pure `info` call so the guest's one-time start-up is paid here rather than by a decision.
pub(crate) fn instantiate(
    engine: &PluginEngine,
    pre: &WorldPre,
    identity: Option<Arc<PluginIdentity>>,
    limits: &PluginLimits,
    warm_up: bool,
) -> Result<Ready, PluginError> {
    let mut store = new_store(engine, identity, limits);
    arm_deadline(&mut store, engine, limits);
    let bound = match pre {
        WorldPre::Placement(p) => {
            let b = p
                .instantiate(&mut store)
                .map_err(|e| classify(e, &store, limits))?;
            if warm_up {
                b.call_info(&mut store)
                    .map_err(|e| classify(e, &store, limits))?;
            }
            Bound::Placement(b)
        }
        WorldPre::Translator(p) => {
            let b = p
                .instantiate(&mut store)
                .map_err(|e| classify(e, &store, limits))?;
            if warm_up {
                b.call_info(&mut store)
                    .map_err(|e| classify(e, &store, limits))?;
            }
            Bound::Translator(b)
        }
    };
    Ok(Ready { store, bound })
}

/// Turns a wasmtime error from a call into what the user should hear.
pub(crate) fn classify(
    err: wasmtime::Error,
    store: &Store<HostState>,
    limits: &PluginLimits,
) -> PluginError {
    if store.data().limiter.hit_memory_limit {
        return PluginError::MemoryLimit {
            limit_bytes: store.data().limiter.memory_limit_bytes,
        };
    }
    // A 0.3.0 answer that does not decode: the plugin ran fine but broke the contract.
    if let Some(malformed) = err.downcast_ref::<crate::contract::wire::MalformedOutput>() {
        return PluginError::InvalidOutput(malformed.to_string());
    }
    if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
        if *trap == wasmtime::Trap::Interrupt {
            return PluginError::Timeout {
                limit_ms: limits.call_timeout.as_millis() as u64,
            };
        }
        let stderr = store.data().stderr_text();
        let message = if stderr.is_empty() {
            trap.to_string()
        } else {
            format!("{trap}; plugin stderr: {stderr}")
        };
        return PluginError::Trap { message };
    }
    let stderr = store.data().stderr_text();
    let message = if stderr.is_empty() {
        format!("{err:#}")
    } else {
        format!("{err:#}; plugin stderr: {stderr}")
    };
    PluginError::Trap { message }
}

/// Contract rules the WIT types cannot express.
fn check_decision(decision: Decision, limit: usize) -> Result<Decision, PluginError> {
    let size = crate::limits::decision_size(&decision);
    if size > limit {
        return Err(PluginError::OutputTooLarge {
            what: "the placement decision",
            size,
            limit,
        });
    }
    match decision {
        Decision::Accept(a) if a.attempts.is_empty() => Err(PluginError::InvalidOutput(
            "accept must list at least one attempt".into(),
        )),
        Decision::Accept(a) if a.attempts.len() > crate::limits::MAX_ATTEMPTS => {
            Err(PluginError::OutputTooLarge {
                what: "the attempt list (entries)",
                size: a.attempts.len(),
                limit: crate::limits::MAX_ATTEMPTS,
            })
        }
        Decision::Defer(mut d) => {
            d.retry_after_ms = d.retry_after_ms.min(crate::limits::MAX_DEFER_MS);
            Ok(Decision::Defer(d))
        }
        other => Ok(other),
    }
}

impl WarmPool {
    /// Whether at most a quarter of the prepared instances are left: only a burst of
    /// decisions gets there between two polls of the worker, which refills at half.
    fn nearly_empty(&self) -> bool {
        self.available.load(Ordering::Relaxed) * 4 <= self.size
    }

    /// Wakes the worker (a no-op if it has already been rung).
    fn ring(&self) {
        let _ = self.doorbell.try_send(());
    }
}

/// Starts the background thread that keeps `n` instances ready and frees spent stores. It
/// stops by itself when the plugin version is dropped (its queues go away).
///
/// A failure to prepare an instance does not stop it: on a loaded machine the warm-up call
/// can overrun its wall-clock deadline once (seen at load 12 on 2 vCPUs), and giving up for
/// good then sent every later decision of the version down the slow inline path. Instead
/// the worker backs off ([`FIRST_RETRY`] doubling up to [`MAX_RETRY`]) and tries again,
/// logging the first failure of a streak; meanwhile decisions instantiate inline and report
/// any failure themselves.
fn start_warm_pool(
    n: usize,
    engine: Arc<PluginEngine>,
    pre: WorldPre,
    identity: Arc<PluginIdentity>,
    limits: PluginLimits,
) -> Option<WarmPool> {
    let worker_identity = identity.clone();
    let prepare = move || instantiate(&engine, &pre, Some(worker_identity.clone()), &limits, true);
    start_warm_pool_with(n, identity, prepare)
}

/// The nice value of the warm-instance threads: the lowest priority, so the scheduler never
/// preempts a decision (or any other vnode thread) to prepare instances ahead.
const WARM_THREAD_NICE: i32 = 19;

/// Puts the calling (warm-instance) thread at [`WARM_THREAD_NICE`]. Its work is never urgent:
/// a decision that finds the pool empty instantiates inline. At normal priority a woken
/// worker preempted the decision running on the same core (on 2 vCPUs the two workers and the
/// deciding thread often want three cores), which showed as the back-to-back tail. On Linux
/// the nice value is per thread, so this touches no other thread.
fn lower_own_priority(identity: &PluginIdentity) {
    if let Err(e) = rustix::process::setpriority_process(None, WARM_THREAD_NICE) {
        tracing::debug!(plugin = %identity, error = %e, "cannot lower the warm-instance thread's priority");
    }
}

/// [`start_warm_pool`] with the preparation of one instance given as a function (the unit
/// tests inject failures through it).
fn start_warm_pool_with(
    n: usize,
    identity: Arc<PluginIdentity>,
    prepare: impl Fn() -> Result<Ready, PluginError> + Send + 'static,
) -> Option<WarmPool> {
    let (ready_tx, ready_rx): (SyncSender<Ready>, Receiver<Ready>) = sync_channel(n);
    let (doorbell_tx, doorbell_rx) = sync_channel::<()>(1);
    let spent: Arc<Mutex<Vec<Store<HostState>>>> = Arc::new(Mutex::new(Vec::new()));
    let name = format!("vnode-plugin-warm-{}", identity.sha256_short());
    let available = Arc::new(AtomicUsize::new(0));
    let counter = available.clone();
    let parked = spent.clone();
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        lower_own_priority(&identity);
        // Consecutive failures to prepare an instance, and the pause before the next try.
        let mut failures = 0u32;
        let mut retry = FIRST_RETRY;
        // Whether this round frees and refills (the first fills the pool).
        let mut act = true;
        // (prepared, spent) as the last poll saw them: unchanged means the calls stopped.
        let mut last_seen = (usize::MAX, usize::MAX);
        // Swapped with the parked list each round, so both keep their capacity and a
        // decision's `push` does not allocate.
        let mut freeing: Vec<Store<HostState>> = Vec::new();
        loop {
            let mut failed = false;
            let mut worked = false;
            if act {
                // Spent stores first: each frees a pooled slot the refill may need.
                std::mem::swap(&mut freeing, &mut *parked.lock());
                worked = !freeing.is_empty();
                freeing.clear();
            }
            while act && counter.load(Ordering::Relaxed) < n {
                let ready = match prepare() {
                    Ok(r) => {
                        if failures > 0 {
                            tracing::info!(plugin = %identity, failures, "preparing plugin instances ahead again");
                        }
                        failures = 0;
                        retry = FIRST_RETRY;
                        r
                    }
                    Err(e) => {
                        if failures == 0 {
                            tracing::warn!(plugin = %identity, error = %e, "cannot prepare a plugin instance ahead; calls instantiate inline until a retry succeeds");
                        }
                        failures = failures.saturating_add(1);
                        failed = true;
                        break;
                    }
                };
                // Counted before it becomes visible, so a taker never drives the count
                // below zero.
                counter.fetch_add(1, Ordering::Relaxed);
                match ready_tx.try_send(ready) {
                    Ok(()) => worked = true,
                    Err(TrySendError::Full(_)) => {
                        counter.fetch_sub(1, Ordering::Relaxed);
                        break;
                    }
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
            let seen = (counter.load(Ordering::Relaxed), parked.lock().len());
            let poll = if failed {
                // Not woken early by the doorbell: calls ring it whenever the pool is empty,
                // which it stays while preparing fails.
                let pause = retry;
                retry = (retry * 2).min(MAX_RETRY);
                std::thread::sleep(pause);
                Duration::ZERO
            } else if worked || seen.0 < n || seen.1 > 0 {
                // Calls are (or were just) taking instances.
                ACTIVE_POLL
            } else {
                IDLE_POLL
            };
            act = match doorbell_rx.recv_timeout(poll) {
                Ok(()) => true,
                Err(RecvTimeoutError::Timeout) => {
                    let now = (counter.load(Ordering::Relaxed), parked.lock().len());
                    // Work in batches: once half the instances are gone (or as many stores
                    // wait to be freed), after a retry pause or an idle poll, or when the
                    // calls have stopped. Each round starts on cold caches (the thread slept)
                    // and later items of a batch run warm, so a batch of four costs much less
                    // than four rounds of one, and the rounds meet fewer decisions.
                    let batch = now.0 * 2 <= n || now.1 >= n;
                    let quiet = now == last_seen;
                    last_seen = now;
                    batch || quiet || poll != ACTIVE_POLL
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
        }
    });
    match spawned {
        Ok(_) => Some(WarmPool {
            ready: Mutex::new(ready_rx),
            available,
            spent,
            doorbell: doorbell_tx,
            size: n,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the plugin warm-instance thread; calls will instantiate inline");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PluginLoader, RuntimeConfig, builtin};
    use std::time::Instant;

    #[test]
    fn the_deadline_counts_cpu_time_with_a_wall_clock_backstop() {
        let ms = Duration::from_millis;
        // Descheduled: 60 ms of wall-clock time, 0.2 ms on the CPU: the call goes on.
        assert_eq!(
            deadline_verdict(Duration::from_micros(200), ms(60), ms(50)),
            DeadlineVerdict::Extend(Duration::from_micros(49_800))
        );
        // Busy: the limit used on the CPU ends it.
        assert_eq!(
            deadline_verdict(ms(50), ms(51), ms(50)),
            DeadlineVerdict::Expired
        );
        // Starved for ten times the limit: ended anyway.
        assert_eq!(
            deadline_verdict(ms(1), ms(500), ms(50)),
            DeadlineVerdict::Expired
        );
        assert_eq!(
            deadline_verdict(ms(1), ms(499), ms(50)),
            DeadlineVerdict::Extend(ms(49))
        );
    }

    /// An engine that keeps no warm pools, and zone-spread loaded in it: the tests below start
    /// a warm worker of their own with an injected preparation.
    fn zone_spread_without_warm_pool() -> (Arc<PluginEngine>, Arc<LoadedPlugin>) {
        let engine = PluginEngine::new(RuntimeConfig {
            warm_instances: 0,
            call_timeout: Duration::from_secs(10),
            ..RuntimeConfig::default()
        })
        .expect("engine");
        let plugin = PluginLoader::new(engine.clone(), None)
            .load_blocking(
                &crate::PluginSource {
                    bytes: builtin::ZONE_SPREAD.to_vec(),
                    path: None,
                },
                Some(PluginKind::Placement),
                "",
            )
            .expect("zone-spread loads");
        (engine, plugin)
    }

    /// The warm worker prepares at the lowest priority, and once calls stop it tops up a pool
    /// they left more than half full (no batch threshold reached, no doorbell rung) and frees
    /// their spent stores.
    #[test]
    fn the_warm_worker_runs_at_low_priority_and_tops_up_when_calls_stop() {
        let (engine, plugin) = zone_spread_without_warm_pool();
        const SIZE: usize = 8;
        let priorities: Arc<Mutex<Vec<i32>>> = Arc::default();
        let (pre, limits, identity) = (plugin.pre.clone(), plugin.limits, plugin.identity.clone());
        let seen = priorities.clone();
        let pool = start_warm_pool_with(SIZE, identity.clone(), move || {
            seen.lock()
                .push(rustix::process::getpriority_process(None).expect("getpriority"));
            instantiate(&engine, &pre, Some(identity.clone()), &limits, true)
        })
        .expect("worker thread");
        let filled = |want: usize| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while pool.available.load(Ordering::Relaxed) < want {
                assert!(
                    Instant::now() < deadline,
                    "the pool holds {} of {want} instances",
                    pool.available.load(Ordering::Relaxed)
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        filled(SIZE);
        // Three decisions take an instance each (as `take_ready` does) and park the spent store.
        for _ in 0..3 {
            let ready = pool.ready.lock().try_recv().expect("a ready instance");
            pool.available.fetch_sub(1, Ordering::Relaxed);
            pool.spent.lock().push(ready.store);
        }
        filled(SIZE);
        assert!(
            pool.spent.lock().is_empty(),
            "the spent stores were freed with the refill"
        );
        let priorities = priorities.lock().clone();
        assert_eq!(priorities.len(), SIZE + 3);
        assert!(
            priorities.iter().all(|p| *p == WARM_THREAD_NICE),
            "instances prepared at nice {priorities:?}"
        );
    }

    /// The warm worker keeps trying after failed preparations, backing off 10 ms, 20 ms,
    /// 40 ms …, and fills the pool once preparing works again. Without the retry the pool
    /// would stay empty after the first failure and this test would time out.
    #[test]
    fn the_warm_worker_retries_failed_preparations_with_backoff() {
        let (engine, plugin) = zone_spread_without_warm_pool();
        const FAILURES: usize = 3;
        const SIZE: usize = 2;
        // Every attempt: when it started and whether it was made to fail.
        let attempts: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::default();
        let (pre, limits, identity) = (plugin.pre.clone(), plugin.limits, plugin.identity.clone());
        let log = attempts.clone();
        let pool = start_warm_pool_with(SIZE, identity.clone(), move || {
            let mut log = log.lock();
            let fail = log.len() < FAILURES;
            log.push((Instant::now(), fail));
            if fail {
                return Err(PluginError::Internal("injected preparation failure".into()));
            }
            instantiate(&engine, &pre, Some(identity.clone()), &limits, true)
        })
        .expect("worker thread");

        let deadline = Instant::now() + Duration::from_secs(60);
        while pool.available.load(Ordering::Relaxed) < SIZE {
            assert!(
                Instant::now() < deadline,
                "the pool never filled after failed preparations: {:?}",
                attempts.lock()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let attempts = attempts.lock().clone();
        let failed: Vec<bool> = attempts.iter().map(|(_, f)| *f).collect();
        assert_eq!(
            failed[..FAILURES + SIZE],
            [true, true, true, false, false],
            "three injected failures, then the pool filled"
        );
        // The pauses after the failures double from 10 ms (lower bounds only: a loaded
        // machine may sleep longer, never shorter).
        for (i, want) in [10u64, 20, 40].into_iter().enumerate() {
            let gap = attempts[i + 1].0 - attempts[i].0;
            assert!(
                gap >= Duration::from_millis(want),
                "pause {i} was {gap:?}, expected at least {want} ms"
            );
        }
        // The prepared instances are real ones.
        let Ready { mut store, bound } = pool.ready.lock().try_recv().expect("a ready instance");
        let Bound::Placement(bindings) = bound else {
            panic!("a placement instance")
        };
        let (pod, ctx) = crate::samples::placement_sample();
        store.set_epoch_deadline(u64::MAX / 2);
        let decision = bindings
            .call_place(&mut store, &pod, &ctx, &mut NoSteps)
            .expect("decides");
        assert!(matches!(decision, Decision::Accept(_)), "{decision:?}");
    }
}
