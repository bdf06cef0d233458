//! Everything that can go wrong with a plugin, in words a user understands.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::identity::{PluginIdentity, PluginKind};

/// Why a plugin could not be loaded, or why one call into it failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    /// The bytes are not WebAssembly at all (or are truncated before the header).
    #[error(
        "not a WebAssembly file ({detail}); a plugin is a `.wasm` component built for wasm32-wasip2"
    )]
    NotWasm {
        /// What was found instead.
        detail: String,
    },
    /// A core WebAssembly module, not a component.
    #[error(
        "this is a core WebAssembly module, not a component: build the plugin with `cargo build --target wasm32-wasip2` (or wrap it with `wasm-tools component new`)"
    )]
    NotAComponent,
    /// A component that wasmtime refuses to compile (truncated, corrupt or using unsupported
    /// features).
    #[error("the component is invalid: {0}")]
    InvalidComponent(String),
    /// The component is not the kind of plugin that was asked for.
    #[error(
        "wrong plugin world: expected a {expected} plugin (world `{expected_world}`), but this component {found}"
    )]
    WrongWorld {
        /// The kind the caller wanted.
        expected: PluginKind,
        /// `vnode:plugin/<world>` the caller wanted.
        expected_world: &'static str,
        /// What the component is instead, in words.
        found: String,
    },
    /// Built against a contract version this host does not implement.
    #[error(
        "the plugin was built against contract vnode:plugin@{plugin}, but this vnode supports {}",
        host_supported.join(", ")
    )]
    UnsupportedContractVersion {
        /// The version the plugin exports.
        plugin: String,
        /// Versions this host loads.
        host_supported: Vec<String>,
    },
    /// Instantiation or import resolution failed (e.g. the plugin imports something the host
    /// does not offer).
    #[error("the plugin cannot be linked: {0}")]
    Link(String),
    /// The plugin spec breaks a rule (a missing file, a limit out of range …).
    #[error("invalid plugin setting {0}")]
    InvalidSpec(crate::spec::SpecError),
    /// The plugin's `init` refused its configuration.
    #[error("the plugin refused its configuration: {0}")]
    InitRejected(String),
    /// The trial decision on the built-in sample pod failed.
    #[error("the smoke test on the built-in sample pod failed: {0}")]
    SmokeFailed(Box<PluginError>),
    /// The plugin trapped (a panic, `unreachable`, a stack overflow …).
    #[error("the plugin crashed (trap): {message}")]
    Trap {
        /// The trap and, when the plugin printed one, its panic message.
        message: String,
    },
    /// The call ran longer than its deadline.
    #[error("the plugin ran longer than its {limit_ms} ms deadline and was stopped")]
    Timeout {
        /// The deadline.
        limit_ms: u64,
    },
    /// The plugin tried to grow its memory beyond the cap.
    #[error(
        "the plugin tried to use more than its {limit_bytes}-byte memory limit and was stopped"
    )]
    MemoryLimit {
        /// The cap.
        limit_bytes: u64,
    },
    /// The plugin's answer is larger than the host accepts.
    #[error("the plugin's answer is too large: {what} is {size} bytes, the limit is {limit}")]
    OutputTooLarge {
        /// Which part of the answer.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The answer is well-typed but breaks a rule of the contract (e.g. accept with no attempt).
    #[error("the plugin's answer breaks the contract: {0}")]
    InvalidOutput(String),
    /// The host is shutting down and takes no more calls.
    #[error("the plugin host is shutting down")]
    ShuttingDown,
    /// Reading the plugin or its configuration failed.
    #[error("cannot read {}: {message}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// A bug or unexpected state in the host itself.
    #[error("internal plugin host error: {0}")]
    Internal(String),
}

impl PluginError {
    /// A short stable label for metrics (`vnode_plugin_errors_total{reason=…}`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            PluginError::NotWasm { .. } => "not_wasm",
            PluginError::NotAComponent => "not_a_component",
            PluginError::InvalidComponent(_) => "invalid_component",
            PluginError::WrongWorld { .. } => "wrong_world",
            PluginError::UnsupportedContractVersion { .. } => "unsupported_version",
            PluginError::Link(_) => "link",
            PluginError::InvalidSpec(_) => "invalid_spec",
            PluginError::InitRejected(_) => "init_rejected",
            PluginError::SmokeFailed(_) => "smoke_failed",
            PluginError::Trap { .. } => "trap",
            PluginError::Timeout { .. } => "timeout",
            PluginError::MemoryLimit { .. } => "memory_limit",
            PluginError::OutputTooLarge { .. } => "output_too_large",
            PluginError::InvalidOutput(_) => "invalid_output",
            PluginError::ShuttingDown => "shutting_down",
            PluginError::Io { .. } => "io",
            PluginError::Internal(_) => "internal",
        }
    }
}

/// A failed call, with the plugin version that failed.
#[derive(Debug, Clone)]
pub struct CallError {
    /// The plugin version the call ran on.
    pub plugin: Arc<PluginIdentity>,
    /// What went wrong.
    pub error: PluginError,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin {}: {}", self.plugin, self.error)
    }
}

impl std::error::Error for CallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
