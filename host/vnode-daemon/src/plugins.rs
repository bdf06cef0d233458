//! The daemon's plugin side: one [`PluginEngine`] and [`PluginLoader`] (the same loader the
//! `vnode plugin` commands use), a [`PluginSlot`] per kind loaded from `config.plugins` (or
//! the shipped defaults built into the binary), a [`PluginWatcher`] per configured file for
//! hot reload, and the slots' status forwarded to the node ([`node::forward_slot_status`]).
//!
//! Nothing here re-implements the plugin host: validation, compile cache, hot swap and
//! refusal bookkeeping all live in `vnode-plugin-host`.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vnode_plugin_host::{
    PluginEngine, PluginError, PluginKind, PluginLoader, PluginSlot, PluginSource, PluginWatcher,
    RuntimeConfig, WatchOptions, WatchTarget, builtin,
};

use crate::config::{PluginSpec, PluginsConfig};
use crate::node::{self, PluginHealth};

/// A plugin that could not be loaded at start-up. `Display` is one line naming the setting.
#[derive(Debug, thiserror::Error)]
#[error("plugin setting {setting}: {error}")]
pub struct PluginsError {
    /// `plugins.placement`, `plugins.translator` (config file keys) or `plugin engine`.
    pub setting: String,
    /// What the plugin host said.
    #[source]
    pub error: PluginError,
}

/// The running plugin side: both slots and the watchers that hot-reload them.
pub struct Plugins {
    /// The placement slot.
    pub placement: Arc<PluginSlot>,
    /// The translator slot.
    pub translator: Arc<PluginSlot>,
    /// Dropping a watcher stops it; kept for the daemon's lifetime.
    _watchers: Vec<PluginWatcher>,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugins")
            .field("placement", &self.placement)
            .field("translator", &self.translator)
            .finish_non_exhaustive()
    }
}

/// The configuration string of a spec: a YAML/JSON string verbatim, null as empty, any other
/// value as JSON. `config_file` (read by the caller) takes its place when given.
pub fn config_string(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Plugins {
    /// Builds the engine and loader, loads both slots, and starts a watcher for every plugin
    /// that comes from a file. The shipped defaults (`zone-spread`, `translator-default`) serve
    /// a kind that is not configured.
    pub async fn start(config: &PluginsConfig) -> Result<Plugins, PluginsError> {
        let engine = PluginEngine::new(RuntimeConfig::default()).map_err(|error| PluginsError {
            setting: "plugin engine".into(),
            error,
        })?;
        let loader = PluginLoader::new(engine, config.cache_dir.clone());
        let mut watchers = Vec::new();
        let placement = load_slot(
            &loader,
            PluginKind::Placement,
            config.placement.as_ref(),
            builtin::ZONE_SPREAD,
            &mut watchers,
        )
        .await?;
        let translator = load_slot(
            &loader,
            PluginKind::Translator,
            config.translator.as_ref(),
            builtin::TRANSLATOR_DEFAULT,
            &mut watchers,
        )
        .await?;
        Ok(Plugins {
            placement,
            translator,
            _watchers: watchers,
        })
    }

    /// Forwards both slots' status (active versions, last refused reload) to the node until
    /// `token` is cancelled.
    pub fn forward_health(
        &self,
        health: watch::Sender<PluginHealth>,
        token: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        node::forward_slot_status(
            self.placement.subscribe(),
            self.translator.subscribe(),
            health,
            token,
        )
    }
}

async fn load_slot(
    loader: &PluginLoader,
    kind: PluginKind,
    spec: Option<&PluginSpec>,
    builtin_bytes: &'static [u8],
    watchers: &mut Vec<PluginWatcher>,
) -> Result<Arc<PluginSlot>, PluginsError> {
    let setting = format!("plugins.{kind}");
    let fail = |error: PluginError| PluginsError {
        setting: setting.clone(),
        error,
    };
    let Some(spec) = spec else {
        let source = PluginSource {
            bytes: builtin_bytes.to_vec(),
            path: None,
        };
        let plugin = loader
            .load(source, Some(kind), String::new())
            .await
            .map_err(fail)?;
        tracing::info!(%kind, plugin = %plugin.identity(), "serving the built-in plugin");
        return Ok(Arc::new(PluginSlot::new(plugin)));
    };
    let source = PluginLoader::read(&spec.path).map_err(fail)?;
    let config = match &spec.config_file {
        Some(file) => std::fs::read_to_string(file).map_err(|e| {
            fail(PluginError::Io {
                path: file.clone(),
                message: e.to_string(),
            })
        })?,
        None => config_string(&spec.config),
    };
    let plugin = loader
        .load(source, Some(kind), config)
        .await
        .map_err(fail)?;
    tracing::info!(%kind, plugin = %plugin.identity(), file = %spec.path.display(), "serving the configured plugin");
    let slot = Arc::new(PluginSlot::new(plugin));
    // Hot reload needs the watcher to see the same configuration the slot was loaded with:
    // that is only possible when the configuration is a file or empty. An inline config in
    // the daemon's own config file changes only with a restart, so its plugin is not watched.
    let config_file: Option<PathBuf> = spec.config_file.clone();
    if config_file.is_some() || spec.config.is_null() {
        let target = WatchTarget {
            slot: slot.clone(),
            plugin_file: spec.path.clone(),
            config_file,
        };
        let watcher =
            PluginWatcher::start(loader.clone(), target, WatchOptions::default()).map_err(fail)?;
        watchers.push(watcher);
    } else {
        tracing::info!(%kind, file = %spec.path.display(), "inline plugin configuration: the plugin file is not watched for hot reload; use configFile for that");
    }
    Ok(slot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PluginSpec;

    #[tokio::test]
    async fn defaults_are_the_builtin_plugins_and_files_hot_reload() {
        let plugins = Plugins::start(&PluginsConfig::default())
            .await
            .expect("built-in plugins load");
        assert_eq!(plugins.placement.status().active.name, "zone-spread");
        assert_eq!(
            plugins.translator.status().active.name,
            "translator-default"
        );
        assert!(plugins.placement.status().active.source.is_none());

        // A configured placement file with a config file is watched: replacing the file
        // with the cost-aware plugin swaps the slot.
        let dir = tempfile::tempdir().expect("tempdir");
        let wasm = dir.path().join("placement.wasm");
        let conf = dir.path().join("placement.conf");
        std::fs::write(&wasm, builtin::ZONE_SPREAD).expect("write");
        std::fs::write(&conf, "").expect("write");
        let config = PluginsConfig {
            placement: Some(PluginSpec {
                path: wasm.clone(),
                config: serde_json::Value::Null,
                config_file: Some(conf),
            }),
            ..PluginsConfig::default()
        };
        let plugins = Plugins::start(&config)
            .await
            .expect("configured plugin loads");
        let mut status = plugins.placement.subscribe();
        assert_eq!(status.borrow().active.name, "zone-spread");
        let tmp = dir.path().join("placement.wasm.tmp");
        std::fs::write(&tmp, builtin::COST_AWARE).expect("write");
        std::fs::rename(&tmp, &wasm).expect("rename");
        tokio::time::timeout(
            std::time::Duration::from_secs(60),
            status.wait_for(|s| s.active.name == "cost-aware"),
        )
        .await
        .expect("hot reload within a minute")
        .expect("slot alive");
    }

    #[tokio::test]
    async fn a_broken_configured_plugin_names_the_setting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wasm = dir.path().join("t.wasm");
        std::fs::write(&wasm, b"not wasm").expect("write");
        let config = PluginsConfig {
            translator: Some(PluginSpec {
                path: wasm,
                config: serde_json::Value::Null,
                config_file: None,
            }),
            ..PluginsConfig::default()
        };
        let e = Plugins::start(&config)
            .await
            .expect_err("refused")
            .to_string();
        assert!(e.starts_with("plugin setting plugins.translator: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn config_strings() {
        assert_eq!(config_string(&serde_json::Value::Null), "");
        assert_eq!(config_string(&serde_json::json!("a = 1\n")), "a = 1\n");
        assert_eq!(config_string(&serde_json::json!({"a": 1})), "{\"a\":1}");
    }
}
