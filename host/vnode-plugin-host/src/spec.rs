//! A plugin as an operator configures it: the component file, its configuration and its own
//! limits. One type and one set of rules for the daemon's config file (`plugins.placement`,
//! `plugins.translator`, `plugins.placement.shadow`) and the `vnode plugin` commands, so a
//! spec that `vnode plugin check` accepts is one the daemon accepts.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::error::PluginError;
use crate::identity::PluginKind;
use crate::loader::{PluginLoader, sha256_hex};
use crate::plugin::LoadedPlugin;

/// The limits one plugin version's calls run under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// The most CPU time one call may use (instantiation excluded), checked at epoch ticks;
    /// ten times as much wall-clock time ends a call anyway.
    pub call_timeout: Duration,
    /// Linear memory one call may grow to, in bytes.
    pub memory_limit_bytes: u64,
}

/// Accepted call deadlines, in milliseconds.
pub const CALL_TIMEOUT_MS_RANGE: RangeInclusive<u64> = 1..=60_000;
/// Accepted memory limits, in MiB (4096 MiB is all a 32-bit linear memory can address).
pub const MEMORY_LIMIT_MIB_RANGE: RangeInclusive<u64> = 1..=4096;

/// One plugin: a component file, its configuration and (optionally) its own limits.
///
/// In YAML (the daemon's config file):
///
/// ```yaml
/// path: /etc/vnode/plugins/placement.wasm
/// config: "spot-strategy = SpotAsPriceGo"   # or configFile: /etc/vnode/placement.conf
/// callTimeoutMs: 100                       # default: VNODE_PLUGIN_CALL_TIMEOUT_MS, else 50
/// memoryLimitMib: 128                      # default: 64
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PluginSpec {
    /// Path of the `.wasm` component.
    pub path: PathBuf,
    /// Plugin-specific configuration, handed to the plugin's `init` and every decision: a
    /// string is passed verbatim (the shipped plugins read `key = value` lines), any other
    /// value as JSON.
    #[serde(default)]
    pub config: serde_json::Value,
    /// A file holding the configuration string instead of `config`; editing it hot-reloads
    /// the plugin with the new configuration (validated by `init` first).
    #[serde(default)]
    pub config_file: Option<PathBuf>,
    /// This plugin's call deadline in milliseconds (1..=60000); `None`: the engine's default.
    #[serde(default)]
    pub call_timeout_ms: Option<u64>,
    /// This plugin's memory limit per call in MiB (1..=4096); `None`: the engine's default.
    #[serde(default)]
    pub memory_limit_mib: Option<u64>,
}

/// A spec that breaks a rule: which field (its config-file name) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// `path`, `configFile`, `callTimeoutMs` or `memoryLimitMib`.
    pub field: &'static str,
    /// What is wrong, for people.
    pub message: String,
}

/// A spec whose plugin could not be loaded: the file, the hash of its bytes when they were
/// read, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {error}", file.display())]
pub struct SpecLoadError {
    /// The plugin or configuration file that failed.
    pub file: PathBuf,
    /// Hex sha256 of the plugin bytes, when they were read.
    pub sha256: Option<String>,
    /// What the plugin host said.
    #[source]
    pub error: PluginError,
}

impl PluginSpec {
    /// A spec for `path` with no configuration and the engine's limits.
    pub fn new(path: impl Into<PathBuf>) -> PluginSpec {
        PluginSpec {
            path: path.into(),
            config: serde_json::Value::Null,
            config_file: None,
            call_timeout_ms: None,
            memory_limit_mib: None,
        }
    }

    /// Checks what can be checked without loading: the files are readable, the configuration
    /// is given inline or as a file (not both), the limits are in range.
    pub fn check(&self) -> Result<(), SpecError> {
        if !self.path.is_file() {
            return Err(SpecError {
                field: "path",
                message: format!("{} is not a readable file", self.path.display()),
            });
        }
        if let Some(file) = &self.config_file {
            if !self.config.is_null() {
                return Err(SpecError {
                    field: "configFile",
                    message: "give the configuration either inline (config) or as a file (configFile), not both".into(),
                });
            }
            if !file.is_file() {
                return Err(SpecError {
                    field: "configFile",
                    message: format!("{} is not a readable file", file.display()),
                });
            }
        }
        if let Some(ms) = self.call_timeout_ms
            && !CALL_TIMEOUT_MS_RANGE.contains(&ms)
        {
            return Err(SpecError {
                field: "callTimeoutMs",
                message: format!(
                    "{ms} is not a call deadline in milliseconds ({}..={})",
                    CALL_TIMEOUT_MS_RANGE.start(),
                    CALL_TIMEOUT_MS_RANGE.end()
                ),
            });
        }
        if let Some(mib) = self.memory_limit_mib
            && !MEMORY_LIMIT_MIB_RANGE.contains(&mib)
        {
            return Err(SpecError {
                field: "memoryLimitMib",
                message: format!(
                    "{mib} is not a memory limit in MiB ({}..={})",
                    MEMORY_LIMIT_MIB_RANGE.start(),
                    MEMORY_LIMIT_MIB_RANGE.end()
                ),
            });
        }
        Ok(())
    }

    /// The limits this spec's calls run under: its own where set, `defaults` otherwise.
    /// Out-of-range values (which [`PluginSpec::check`] refuses) are clamped.
    pub fn limits(&self, defaults: PluginLimits) -> PluginLimits {
        PluginLimits {
            call_timeout: self.call_timeout_ms.map_or(defaults.call_timeout, |ms| {
                Duration::from_millis(
                    ms.clamp(*CALL_TIMEOUT_MS_RANGE.start(), *CALL_TIMEOUT_MS_RANGE.end()),
                )
            }),
            memory_limit_bytes: self
                .memory_limit_mib
                .map_or(defaults.memory_limit_bytes, |mib| {
                    mib.clamp(
                        *MEMORY_LIMIT_MIB_RANGE.start(),
                        *MEMORY_LIMIT_MIB_RANGE.end(),
                    ) << 20
                }),
        }
    }

    /// The configuration string: the file's content when `configFile` is set, else `config`
    /// (a string verbatim, null as empty, any other value as JSON).
    pub fn config_string(&self) -> Result<String, PluginError> {
        match &self.config_file {
            Some(file) => std::fs::read_to_string(file).map_err(|e| PluginError::Io {
                path: file.clone(),
                message: e.to_string(),
            }),
            None => Ok(inline_config_string(&self.config)),
        }
    }
}

/// An inline configuration value as the plugin sees it: a string verbatim, null as empty,
/// any other value as JSON.
pub fn inline_config_string(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl PluginLoader {
    /// Reads, validates and loads the plugin a spec names, with its configuration and its
    /// limits (the engine's defaults where the spec sets none), on a blocking thread.
    pub async fn load_spec(
        &self,
        spec: &PluginSpec,
        expected: Option<PluginKind>,
    ) -> Result<Arc<LoadedPlugin>, SpecLoadError> {
        let fail = |file: &PathBuf, sha256: Option<String>| {
            let file = file.clone();
            move |error| SpecLoadError {
                file,
                sha256,
                error,
            }
        };
        if let Err(e) = spec.check() {
            let file = match e.field {
                "configFile" => spec.config_file.as_ref().unwrap_or(&spec.path),
                _ => &spec.path,
            };
            return Err(fail(file, None)(PluginError::InvalidSpec(e)));
        }
        let source = PluginLoader::read(&spec.path).map_err(fail(&spec.path, None))?;
        let sha256 = Some(sha256_hex(&source.bytes));
        let config = spec
            .config_string()
            .map_err(fail(spec.config_file.as_ref().unwrap_or(&spec.path), None))?;
        let limits = spec.limits(self.engine().default_limits());
        self.load_with_limits(source, expected, config, limits)
            .await
            .map_err(fail(&spec.path, sha256))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_yaml(text: &str) -> Result<PluginSpec, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn limits_default_to_the_engine_and_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wasm = dir.path().join("p.wasm");
        std::fs::write(&wasm, b"\0asm").expect("write");
        let defaults = PluginLimits {
            call_timeout: Duration::from_millis(50),
            memory_limit_bytes: 64 << 20,
        };
        let mut spec = PluginSpec::new(&wasm);
        assert_eq!(spec.check(), Ok(()));
        assert_eq!(spec.limits(defaults), defaults);
        spec.call_timeout_ms = Some(120);
        spec.memory_limit_mib = Some(16);
        assert_eq!(spec.check(), Ok(()));
        assert_eq!(
            spec.limits(defaults),
            PluginLimits {
                call_timeout: Duration::from_millis(120),
                memory_limit_bytes: 16 << 20,
            }
        );
        for (timeout, memory, field) in [
            (Some(0), None, "callTimeoutMs"),
            (Some(60_001), None, "callTimeoutMs"),
            (None, Some(0), "memoryLimitMib"),
            (None, Some(4097), "memoryLimitMib"),
        ] {
            spec.call_timeout_ms = timeout;
            spec.memory_limit_mib = memory;
            let e = spec.check().expect_err("out of range");
            assert_eq!(e.field, field, "{e}");
            assert!(e.to_string().starts_with(field), "{e}");
        }
    }

    #[test]
    fn files_and_config_rules() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wasm = dir.path().join("p.wasm");
        let conf = dir.path().join("p.conf");
        std::fs::write(&wasm, b"\0asm").expect("write");
        std::fs::write(&conf, "a = 1\n").expect("write");
        let missing = PluginSpec::new(dir.path().join("missing.wasm"));
        assert_eq!(missing.check().expect_err("missing").field, "path");

        let mut spec = PluginSpec::new(&wasm);
        spec.config_file = Some(conf.clone());
        assert_eq!(spec.config_string().expect("reads"), "a = 1\n");
        spec.config = serde_json::json!("b = 2");
        assert_eq!(spec.check().expect_err("both").field, "configFile");
        spec.config_file = Some(dir.path().join("missing.conf"));
        spec.config = serde_json::Value::Null;
        assert_eq!(spec.check().expect_err("missing").field, "configFile");

        assert_eq!(inline_config_string(&serde_json::Value::Null), "");
        assert_eq!(
            inline_config_string(&serde_json::json!("a = 1\n")),
            "a = 1\n"
        );
        assert_eq!(
            inline_config_string(&serde_json::json!({"a": 1})),
            "{\"a\":1}"
        );
    }

    #[test]
    fn the_wire_names_are_camel_case_and_unknown_fields_are_refused() {
        let spec = spec_yaml(
            r#"{"path": "/p.wasm", "config": "x", "callTimeoutMs": 7, "memoryLimitMib": 9}"#,
        )
        .expect("valid");
        assert_eq!(spec.call_timeout_ms, Some(7));
        assert_eq!(spec.memory_limit_mib, Some(9));
        let e = spec_yaml(r#"{"path": "/p.wasm", "callTimeout": 7}"#).expect_err("unknown");
        assert!(e.contains("callTimeout"), "{e}");
        let e = spec_yaml(r#"{"path": "/p.wasm", "callTimeoutMs": -1}"#).expect_err("negative");
        assert!(e.contains("-1"), "{e}");
    }
}
