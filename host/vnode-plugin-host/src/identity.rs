//! What a plugin is: its kind, and the identity every decision carries.

use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

/// The two kinds of plugin, one per contract world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginKind {
    /// `world placement-plugin`: where and how a pod runs.
    Placement,
    /// `world translator-plugin`: pod → CreateContainerGroup request.
    Translator,
}

impl PluginKind {
    /// The WIT world name.
    pub fn world(self) -> &'static str {
        match self {
            PluginKind::Placement => "placement-plugin",
            PluginKind::Translator => "translator-plugin",
        }
    }

    /// The exported interface that identifies the world (`vnode:plugin/<this>@<version>`).
    pub fn interface(self) -> &'static str {
        match self {
            PluginKind::Placement => "placement",
            PluginKind::Translator => "translator",
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PluginKind::Placement => "placement",
            PluginKind::Translator => "translator",
        })
    }
}

/// Which plugin version made a decision: attached to every result and every error, shown on the
/// node and on every pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginIdentity {
    /// Placement or translator.
    pub kind: PluginKind,
    /// The plugin's own name (`info().name`).
    pub name: String,
    /// The plugin's own version (`info().version`).
    pub version: String,
    /// One line on what it does (`info().description`).
    pub description: String,
    /// The contract version it was built against, e.g. `0.1.0`.
    pub contract_version: String,
    /// Hex sha256 of the component bytes.
    pub sha256: String,
    /// Hex sha256 of the configuration string it was loaded with.
    pub config_sha256: String,
    /// Where it was loaded from (`None` for a built-in plugin).
    pub source: Option<PathBuf>,
    /// When this version was loaded.
    pub loaded_at: SystemTime,
}

impl PluginIdentity {
    /// The first 12 hex digits of the component hash, for logs and labels.
    pub fn sha256_short(&self) -> &str {
        self.sha256.get(..12).unwrap_or(&self.sha256)
    }
}

impl fmt::Display for PluginIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} (sha256 {})",
            self.name,
            self.version,
            self.sha256_short()
        )
    }
}
