//! The one wasmtime engine of the process, its linkers, the epoch ticker and the limits every
//! call runs under.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, EngineWeak, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::contract::{v0_1_0, v0_2_0, v0_3_0};
use crate::error::PluginError;
use crate::spec::{MEMORY_LIMIT_MIB_RANGE, PluginLimits};
use crate::state::HostState;

/// Limits and sizing of the plugin runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// CPU-time limit of one call (instantiation excluded) for plugins whose spec sets none
    /// ([`crate::PluginSpec::call_timeout_ms`]). Default 50 ms.
    pub call_timeout: Duration,
    /// Linear memory a plugin may use per call, for plugins whose spec sets none
    /// ([`crate::PluginSpec::memory_limit_mib`]). Default 64 MiB.
    pub memory_limit_bytes: u64,
    /// Calls running at once through the async API (more wait). Default 8.
    pub max_concurrent_calls: usize,
    /// Instances prepared ahead of need per loaded plugin version (0 = instantiate on the call
    /// path). Each is used for exactly one decision. Default 8. With 4, a pod every ~1.1 ms
    /// (`vnode bench plugins`, paced) often took the pool down to one instance between two
    /// polls of the warm worker (every 2 ms), so the decision rang its doorbell: a futex wake
    /// of the other vCPU costing ~20 µs (`--steps`: "retire" p99 22-24 µs with 4, 0.3-0.4 µs
    /// with 8), and the worker refilled in smaller, costlier rounds (its CPU per pod 101-103
    /// µs with 4, 86-88 with 8; process RSS the same within 1 MB).
    pub warm_instances: usize,
    /// Epoch tick: the deadline's granularity. Default 5 ms.
    pub epoch_tick: Duration,
    /// Use the pooling allocator (falls back to on-demand if the machine cannot reserve the
    /// address space). Default true.
    pub pooling: bool,
    /// Largest placement answer accepted, in bytes of strings. Default 64 KiB.
    pub max_placement_output_bytes: usize,
    /// Largest translator answer accepted, in bytes of strings. Default 8 MiB (config files
    /// travel inside it).
    pub max_translator_output_bytes: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            call_timeout: Duration::from_millis(50),
            memory_limit_bytes: 64 << 20,
            max_concurrent_calls: 8,
            warm_instances: 8,
            epoch_tick: Duration::from_millis(5),
            pooling: true,
            max_placement_output_bytes: 64 << 10,
            max_translator_output_bytes: 8 << 20,
        }
    }
}

impl RuntimeConfig {
    /// The limits of a plugin whose spec sets none.
    pub fn default_limits(&self) -> PluginLimits {
        PluginLimits {
            call_timeout: self.call_timeout,
            memory_limit_bytes: self.memory_limit_bytes,
        }
    }
}

/// Epoch ticks of `tick` for a call deadline of `call_timeout` (at least 1).
pub(crate) fn deadline_ticks(tick: Duration, call_timeout: Duration) -> u64 {
    let tick = tick.as_nanos().max(1);
    (call_timeout.as_nanos().div_ceil(tick) as u64).max(1)
}

/// The shared engine: compile, link and run every plugin of the process.
pub struct PluginEngine {
    pub(crate) engine: Engine,
    pub(crate) placement_linker: Linker<HostState>,
    pub(crate) translator_linker: Linker<HostState>,
    pub(crate) config: RuntimeConfig,
    pub(crate) calls: Arc<tokio::sync::Semaphore>,
    pooling: bool,
}

impl std::fmt::Debug for PluginEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginEngine")
            .field("config", &self.config)
            .field("pooling", &self.pooling)
            .finish_non_exhaustive()
    }
}

impl PluginEngine {
    /// Builds the engine (pooling allocator unless unavailable), both linkers and the epoch
    /// ticker thread (which stops when the engine is dropped).
    pub fn new(config: RuntimeConfig) -> Result<Arc<PluginEngine>, PluginError> {
        let (engine, pooling) = build_engine(&config)?;
        let placement_linker = placement_linker(&engine)?;
        let translator_linker = translator_linker(&engine)?;
        start_epoch_ticker(engine.weak(), config.epoch_tick)?;
        Ok(Arc::new(PluginEngine {
            engine,
            placement_linker,
            translator_linker,
            calls: Arc::new(tokio::sync::Semaphore::new(
                config.max_concurrent_calls.max(1),
            )),
            config,
            pooling,
        }))
    }

    /// Whether the pooling allocator is in use (false after the fallback).
    pub fn uses_pooling(&self) -> bool {
        self.pooling
    }

    /// The engine's settings.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// The limits of a plugin whose spec sets none.
    pub fn default_limits(&self) -> PluginLimits {
        self.config.default_limits()
    }

    /// A hash of everything that makes a compiled artifact loadable by this engine (wasmtime
    /// version, settings, CPU features): part of the compiled-cache key.
    pub(crate) fn compatibility_hash(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        // SipHash with fixed keys: stable for one build of vnode, which is all a cache key
        // needs (another build may differ and simply recompiles).
        #[allow(deprecated)]
        let mut hasher = std::hash::SipHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        hasher.finish()
    }
}

fn base_config(config: &RuntimeConfig) -> Config {
    let mut c = Config::new();
    c.wasm_component_model(true);
    c.epoch_interruption(true);
    c.parallel_compilation(true);
    // Bound the guest stack (default 512 KiB) so deep recursion traps quickly.
    c.max_wasm_stack(512 << 10);
    // Diagnostics: `VNODE_PLUGIN_PERFMAP=1` writes /tmp/perf-<pid>.map so `perf report` can
    // name the plugins' compiled functions. Off by default (it writes a file per process).
    if std::env::var_os("VNODE_PLUGIN_PERFMAP").is_some_and(|v| v == "1") {
        c.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    let _ = config;
    c
}

/// Linear memory restored in place (not decommitted) when a slot is reused, if the kernel
/// tells us which pages are dirty: covers what the shipped plugins touch per decision.
const KEEP_RESIDENT_WITH_PAGEMAP: usize = 8 << 20;

/// The largest linear memory a pooled slot holds: the largest limit a spec may set, or twice
/// the engine default if that is larger.
fn max_pool_memory_bytes(config: &RuntimeConfig) -> usize {
    let largest_spec = (*MEMORY_LIMIT_MIB_RANGE.end() << 20) as usize;
    largest_spec.max((config.memory_limit_bytes as usize).saturating_mul(2))
}

fn build_engine(config: &RuntimeConfig) -> Result<(Engine, bool), PluginError> {
    if config.pooling {
        let mut c = base_config(config);
        let mut pool = PoolingAllocationConfig::default();
        // Sized for: active + previous version of two kinds (+ a shadow), each with its warm
        // instances, plus the calls in flight; with room to spare. A Rust wasip2 component has
        // a few core instances (the module plus shims).
        let instances = 256;
        pool.total_component_instances(instances)
            .total_core_instances(instances * 4)
            .total_memories(instances)
            .total_tables(instances * 2)
            .total_stacks(instances)
            .max_core_instances_per_component(16)
            .max_memories_per_component(2)
            .max_tables_per_component(4)
            // Above every plugin's own limit (each spec may set one, up to 4 GiB), so the
            // limiter (which reports `MemoryLimit`) is what stops a growing guest, not a
            // silent failed `memory.grow` at the slot's end. This costs no address space: a
            // slot reserves `Config::memory_reservation` (4 GiB on 64-bit hosts) anyway, and
            // only the pages a guest touches are ever committed.
            .max_memory_size(max_pool_memory_bytes(config))
            // Bounds the memory kept resident by idle slots (see below); enough for both
            // kinds' warm instances across a swap plus the calls in flight.
            .max_unused_warm_slots(32)
            .table_keep_resident(64 << 10);
        // Resetting a used slot dominated a decision's cost (perf: a 1 MiB `memset` per
        // instance, or `madvise` plus fresh page faults on the next use). With Linux's
        // PAGEMAP_SCAN (6.7+) only the pages the plugin actually dirtied are restored and
        // they stay resident, so the next instance in the slot neither faults nor zeroes
        // megabytes. Without it, keep the old small memset window.
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            pool.pagemap_scan(wasmtime::Enabled::Auto)
                .linear_memory_keep_resident(KEEP_RESIDENT_WITH_PAGEMAP);
        } else {
            pool.linear_memory_keep_resident(1 << 20);
        }
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        match Engine::new(&c) {
            Ok(engine) => return Ok((engine, true)),
            Err(e) => tracing::warn!(
                error = %e,
                "pooling allocator unavailable (address space?); falling back to on-demand instance allocation"
            ),
        }
    }
    let c = base_config(config);
    let engine =
        Engine::new(&c).map_err(|e| PluginError::Internal(format!("wasmtime engine: {e}")))?;
    Ok((engine, false))
}

fn linker_error(e: wasmtime::Error) -> PluginError {
    PluginError::Internal(format!("building the plugin linker: {e}"))
}

fn placement_linker(engine: &Engine) -> Result<Linker<HostState>, PluginError> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(linker_error)?;
    v0_1_0::placement::PlacementPlugin::add_to_linker::<HostState, HasSelf<HostState>>(
        &mut linker,
        |s| s,
    )
    .map_err(linker_error)?;
    // Every supported contract version's imports, side by side (distinct versioned names).
    v0_2_0::placement::PlacementPlugin::add_to_linker::<HostState, HasSelf<HostState>>(
        &mut linker,
        |s| s,
    )
    .map_err(linker_error)?;
    v0_3_0::placement::PlacementPlugin::add_to_linker::<HostState, HasSelf<HostState>>(
        &mut linker,
        |s| s,
    )
    .map_err(linker_error)?;
    Ok(linker)
}

fn translator_linker(engine: &Engine) -> Result<Linker<HostState>, PluginError> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(linker_error)?;
    v0_1_0::translator::TranslatorPlugin::add_to_linker::<HostState, HasSelf<HostState>>(
        &mut linker,
        |s| s,
    )
    .map_err(linker_error)?;
    v0_2_0::translator::TranslatorPlugin::add_to_linker::<HostState, HasSelf<HostState>>(
        &mut linker,
        |s| s,
    )
    .map_err(linker_error)?;
    v0_3_0::translator::TranslatorPlugin::add_to_linker::<HostState, HasSelf<HostState>>(
        &mut linker,
        |s| s,
    )
    .map_err(linker_error)?;
    Ok(linker)
}

/// Bumps the engine's epoch every `tick` until the engine is dropped.
fn start_epoch_ticker(engine: EngineWeak, tick: Duration) -> Result<(), PluginError> {
    std::thread::Builder::new()
        .name("vnode-plugin-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(tick);
                match engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .map(|_| ())
        .map_err(|e| PluginError::Internal(format!("starting the epoch ticker thread: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_ticks_round_up() {
        let c = RuntimeConfig::default();
        assert_eq!(deadline_ticks(c.epoch_tick, c.call_timeout), 10);
        assert_eq!(deadline_ticks(c.epoch_tick, Duration::from_millis(51)), 11);
        assert_eq!(deadline_ticks(c.epoch_tick, Duration::ZERO), 1);
    }

    #[test]
    fn engine_builds_with_pooling_or_falls_back() {
        let engine = PluginEngine::new(RuntimeConfig::default()).expect("engine");
        // Either is fine; the point is that construction never fails on this machine.
        let _ = engine.uses_pooling();
        assert_ne!(engine.compatibility_hash(), 0);
    }
}
