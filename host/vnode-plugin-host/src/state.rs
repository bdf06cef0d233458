//! Per-store host state: a deny-all, deterministic WASI context, the memory limiter and the
//! bounded `host.log` import. Kept in one file because the `WasiView` shape changes between
//! wasmtime releases.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::{MemoryOutputPipe, SinkOutputStream};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::contract::v0_1_0::placement::vnode::plugin::host::{self, LogLevel};
use crate::identity::PluginIdentity;
use crate::plugin::CallClock;

/// Bytes of the guest's stderr kept per call (enough for a panic message).
pub(crate) const STDERR_CAPTURE_BYTES: usize = 4096;

/// Limits of the `host.log` import, per call (documented in the WIT).
pub(crate) const LOG_MAX_LINES: u32 = 64;
pub(crate) const LOG_MAX_LINE_BYTES: usize = 1024;

/// The state of one store (one decision).
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: CallLimiter,
    pub(crate) stderr: MemoryOutputPipe,
    log: LogSink,
    /// When the current call started, for the epoch-deadline callback (re-armed per call).
    pub(crate) call_clock: CallClock,
}

impl HostState {
    pub(crate) fn new(plugin: Option<Arc<PluginIdentity>>, memory_limit_bytes: u64) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE_BYTES);
        let mut builder = WasiCtxBuilder::new();
        builder
            // stdin closed (the default); stdout discarded; stderr captured, bounded.
            .stdout(SinkOutputStream)
            .stderr(stderr.clone())
            // Deterministic, replayable: a fixed clock and a fixed random stream.
            .wall_clock(FixedWallClock)
            .monotonic_clock(FixedMonotonicClock)
            .secure_random(wasmtime_wasi::Deterministic::new(
                DETERMINISTIC_SEED.to_vec(),
            ))
            .insecure_random(wasmtime_wasi::Deterministic::new(
                DETERMINISTIC_SEED.to_vec(),
            ))
            .insecure_random_seed(0x766e_6f64_6500)
            .max_random_size(4096)
            // No network at all (no preopens, env or args is the builder's default).
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        HostState {
            wasi: builder.build(),
            table: ResourceTable::new(),
            limiter: CallLimiter::new(memory_limit_bytes),
            stderr,
            log: LogSink {
                plugin,
                lines: 0,
                dropped: 0,
            },
            call_clock: CallClock::start(),
        }
    }

    /// What the guest wrote to stderr (e.g. a panic message), lossily decoded.
    pub(crate) fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents())
            .trim()
            .to_string()
    }

    /// Log lines dropped by the bound during this call.
    pub(crate) fn dropped_log_lines(&self) -> u32 {
        self.log.dropped
    }
}

/// Arbitrary but fixed bytes: a plugin asking for randomness gets the same stream every call.
const DETERMINISTIC_SEED: [u8; 16] = *b"vnode-plugin-rng";

/// Wall clock frozen at the Unix epoch: decisions cannot depend on the time of day.
struct FixedWallClock;

impl wasmtime_wasi::HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// Monotonic clock that never advances.
struct FixedMonotonicClock;

impl wasmtime_wasi::HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Memory cap per call; remembers whether the cap was hit so a trap can be reported as
/// [`crate::PluginError::MemoryLimit`].
pub(crate) struct CallLimiter {
    pub(crate) memory_limit_bytes: u64,
    pub(crate) hit_memory_limit: bool,
}

impl CallLimiter {
    fn new(memory_limit_bytes: u64) -> Self {
        CallLimiter {
            memory_limit_bytes,
            hit_memory_limit: false,
        }
    }
}

/// Tables are small in Rust guests; this bounds a hostile one.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl wasmtime::ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_limit_bytes {
            self.hit_memory_limit = true;
            return Err(wasmtime::format_err!(
                "memory limit of {} bytes exceeded (wanted {desired})",
                self.memory_limit_bytes
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Err(wasmtime::format_err!(
                "table limit of {MAX_TABLE_ELEMENTS} elements exceeded"
            ));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        32
    }
    fn tables(&self) -> usize {
        32
    }
    fn memories(&self) -> usize {
        8
    }
}

/// The bounded `host.log` import.
struct LogSink {
    plugin: Option<Arc<PluginIdentity>>,
    lines: u32,
    dropped: u32,
}

impl host::Host for HostState {
    fn log(&mut self, level: LogLevel, message: String) {
        let sink = &mut self.log;
        if sink.lines >= LOG_MAX_LINES {
            sink.dropped += 1;
            return;
        }
        sink.lines += 1;
        let message = truncate_utf8(&message, LOG_MAX_LINE_BYTES);
        let (name, sha) = match &sink.plugin {
            Some(p) => (p.name.as_str(), p.sha256_short()),
            None => ("(loading)", ""),
        };
        match level {
            LogLevel::Trace => {
                tracing::trace!(target: "vnode::plugin", plugin = name, sha256 = sha, "{message}")
            }
            LogLevel::Debug => {
                tracing::debug!(target: "vnode::plugin", plugin = name, sha256 = sha, "{message}")
            }
            LogLevel::Info => {
                tracing::info!(target: "vnode::plugin", plugin = name, sha256 = sha, "{message}")
            }
            LogLevel::Warn => {
                tracing::warn!(target: "vnode::plugin", plugin = name, sha256 = sha, "{message}")
            }
            LogLevel::Error => {
                tracing::error!(target: "vnode::plugin", plugin = name, sha256 = sha, "{message}")
            }
        }
    }
}

// The type-only interfaces have no functions; bindgen still wants their (empty) host traits.
impl crate::contract::v0_1_0::placement::vnode::plugin::types::Host for HostState {}
impl crate::contract::v0_1_0::translator::vnode::plugin::pod::Host for HostState {}
impl crate::contract::v0_1_0::translator::vnode::plugin::request::Host for HostState {}

/// At most `max` bytes of `s`, cut on a character boundary.
pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("héllo", 3), "hé");
        assert_eq!(truncate_utf8("abc", 10), "abc");
    }

    #[test]
    fn log_is_bounded_per_call() {
        let mut state = HostState::new(None, 1 << 20);
        for i in 0..(LOG_MAX_LINES + 10) {
            host::Host::log(&mut state, LogLevel::Debug, format!("line {i}"));
        }
        assert_eq!(state.dropped_log_lines(), 10);
    }
}
