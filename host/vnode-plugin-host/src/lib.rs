//! The plugin contract in Rust: loading, validating, running and hot-reloading Wasm component
//! plugins.
//!
//! - [`contract`]: the WIT contract's types (latest version re-exported flat).
//! - [`PluginEngine`]: the one wasmtime engine (pooling allocator, epoch deadlines, memory cap,
//!   deny-all deterministic WASI).
//! - [`PluginSpec`]: a plugin as configured (file, configuration, its own [`PluginLimits`]),
//!   shared by the daemon's config file and the `vnode plugin` commands.
//! - [`PluginLoader`]: bytes → validated [`LoadedPlugin`] (world/version detection, compiled
//!   cache, `init`, smoke decision).
//! - [`PluginSlot`]: the active version of one plugin kind, swapped atomically; decisions carry
//!   the [`PluginIdentity`] that made them; [`PluginSlot::subscribe`] reports swaps and refusals.
//! - [`PluginWatcher`]: hot reload from files (rename, partial write, ConfigMap `..data`).
//! - [`builtin`]: the plugins built from `plugins/` and the shipped defaults' bytes.

pub mod contract;
mod engine;
mod error;
mod identity;
mod limits;
mod loader;
mod plugin;
pub mod samples;
mod slot;
mod spec;
mod state;
pub mod steps;
mod watch;

pub use engine::{PluginEngine, RuntimeConfig};
pub use error::{CallError, PluginError};
pub use identity::{PluginIdentity, PluginKind};
pub use loader::{PluginLoader, PluginSource, check_header, sha256_hex};
pub use plugin::{Decided, LoadedPlugin};
pub use slot::{PluginSlot, RefusedReload, SlotStatus};
pub use spec::{
    CALL_TIMEOUT_MS_RANGE, MEMORY_LIMIT_MIB_RANGE, PluginLimits, PluginSpec, SpecError,
    SpecLoadError, inline_config_string,
};
pub use watch::{PluginWatcher, WatchOptions, WatchTarget};

/// The components built from `plugins/` (wasm32-wasip2, release) by this crate's build script:
/// `<CRATE>_PATH` for every crate, the bytes of the shipped defaults (`ZONE_SPREAD`,
/// `COST_AWARE`, `TRANSLATOR_DEFAULT`), and [`builtin::ALL`].
pub mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin.rs"));
}
