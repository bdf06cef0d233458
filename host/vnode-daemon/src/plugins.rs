//! The daemon's plugin side: one [`PluginEngine`] and [`PluginLoader`] (the same loader the
//! `vnode plugin` commands use), a [`PluginSlot`] per kind loaded from `config.plugins` (or
//! the shipped defaults built into the binary), an optional shadow placement candidate
//! ([`shadow`]), a [`PluginWatcher`] per configured file for hot reload, the daemon's config
//! file watched for changes to its `plugins` section ([`Plugins::watch_config_file`]), and the
//! slots' status forwarded to the node.
//!
//! Nothing here re-implements the plugin host: validation, compile cache, hot swap and
//! refusal bookkeeping all live in `vnode-plugin-host`. A changed spec is loaded and validated
//! in full before anything is swapped; a refused one leaves the running version (and its
//! file watcher) in place and is recorded on the slot, so the node shows it.

pub mod shadow;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vnode_plugin_host::{
    CALL_TIMEOUT_MS_RANGE, LoadedPlugin, PluginEngine, PluginError, PluginKind, PluginLoader,
    PluginSlot, PluginSource, PluginWatcher, RefusedReload, RuntimeConfig, SpecLoadError,
    WatchOptions, WatchTarget, builtin,
};

use crate::config::{FileSnapshot, PluginSpec, PluginsConfig};
use crate::metrics::Metrics;
use crate::node::{self, PluginHealth};
use shadow::{DEFAULT_SHADOW_CONCURRENCY, ShadowPlacement, ShadowState};

/// A plugin that could not be loaded at start-up. `Display` is one line naming the setting.
#[derive(Debug, thiserror::Error)]
#[error("plugin setting {setting}: {error}")]
pub struct PluginsError {
    /// `plugins.placement`, `plugins.translator`, `plugins.placement.shadow` (config file
    /// keys) or `plugin engine`.
    pub setting: String,
    /// What the plugin host said.
    #[source]
    pub error: PluginError,
}

/// The running plugin side: both slots, the shadow candidate, and the watchers that
/// hot-reload them.
pub struct Plugins {
    /// The placement slot.
    pub placement: Arc<PluginSlot>,
    /// The translator slot.
    pub translator: Arc<PluginSlot>,
    /// The placement candidate running in shadow (none configured: it does nothing).
    pub shadow: Arc<ShadowPlacement>,
    loader: PluginLoader,
    /// What is applied, and the watchers of the applied files; one reload at a time.
    state: tokio::sync::Mutex<Applied>,
}

/// The applied `plugins` section and the watchers that belong to it. A watcher stops when
/// dropped.
struct Applied {
    config: PluginsConfig,
    placement_watcher: Option<PluginWatcher>,
    translator_watcher: Option<PluginWatcher>,
    shadow_watcher: Option<PluginWatcher>,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugins")
            .field("placement", &self.placement)
            .field("translator", &self.translator)
            .field("shadow", &self.shadow)
            .finish_non_exhaustive()
    }
}

/// What one [`Plugins::apply`] did, by config key.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// Specs now in effect (swapped, or shadow started/stopped).
    pub applied: Vec<String>,
    /// Specs that were refused (the previous version keeps serving).
    pub refused: Vec<String>,
    /// Settings that changed but only take effect after a restart.
    pub restart_needed: Vec<String>,
}

impl ApplyReport {
    /// `applied`, `refused`, `restart_needed` or `unchanged`: the metric's result.
    fn result(&self) -> &'static str {
        if !self.refused.is_empty() {
            "refused"
        } else if !self.applied.is_empty() {
            "applied"
        } else if !self.restart_needed.is_empty() {
            "restart_needed"
        } else {
            "unchanged"
        }
    }
}

/// A spec that could not be loaded: the file, the hash of its bytes when they were read,
/// and why.
struct LoadFailure(SpecLoadError);

impl LoadFailure {
    fn refusal(self) -> RefusedReload {
        RefusedReload {
            at: SystemTime::now(),
            file: self.0.file,
            sha256: self.0.sha256,
            reason: self.0.error.to_string(),
        }
    }
}

/// Loads one spec (the built-in `builtin` when `spec` is `None`) through the full validation,
/// with the spec's own limits ([`PluginLoader::load_spec`], the same as `vnode plugin check`).
async fn load_spec(
    loader: &PluginLoader,
    kind: PluginKind,
    spec: Option<&PluginSpec>,
    builtin: &'static [u8],
) -> Result<Arc<LoadedPlugin>, LoadFailure> {
    let Some(spec) = spec else {
        let source = PluginSource {
            bytes: builtin.to_vec(),
            path: None,
        };
        return loader
            .load(source, Some(kind), String::new())
            .await
            .map_err(|error| {
                LoadFailure(SpecLoadError {
                    file: PathBuf::from(format!("built-in {kind} plugin")),
                    sha256: None,
                    error,
                })
            });
    };
    loader
        .load_spec(spec, Some(kind))
        .await
        .map_err(LoadFailure)
}

/// A hot-reload watcher for `spec`'s files, when it has any. Hot reload needs the watcher to
/// see the same configuration the slot was loaded with: that is only possible when the
/// configuration is a file or empty. An inline config in the daemon's config file changes
/// through a config file reload instead.
fn watch_spec(
    loader: &PluginLoader,
    slot: &Arc<PluginSlot>,
    spec: Option<&PluginSpec>,
    setting: &str,
) -> Result<Option<PluginWatcher>, PluginError> {
    let Some(spec) = spec else { return Ok(None) };
    if spec.config_file.is_none() && !spec.config.is_null() {
        tracing::info!(setting, file = %spec.path.display(), "inline plugin configuration: the plugin file is not watched for hot reload; use configFile for that");
        return Ok(None);
    }
    let target = WatchTarget {
        slot: slot.clone(),
        plugin_file: spec.path.clone(),
        config_file: spec.config_file.clone(),
    };
    PluginWatcher::start(loader.clone(), target, WatchOptions::default()).map(Some)
}

/// Same bytes, same configuration and same limits: swapping would change nothing.
fn same_version(a: &LoadedPlugin, b: &LoadedPlugin) -> bool {
    a.identity().sha256 == b.identity().sha256
        && a.identity().config_sha256 == b.identity().config_sha256
        && a.limits() == b.limits()
}

/// Environment variable with the default plugin call deadline in milliseconds (for plugins
/// whose spec sets no `callTimeoutMs`; the same variable `vnode plugin check|simulate` read).
/// The deadline is wall-clock time, so a slow plugin (e.g. a Python one, 2–10 ms of CPU per
/// call) on a CPU-starved node may need more than the default 50 ms.
pub const CALL_TIMEOUT_ENV: &str = "VNODE_PLUGIN_CALL_TIMEOUT_MS";

/// The engine's limits: the defaults, with the call deadline from [`CALL_TIMEOUT_ENV`] when
/// it holds a number of milliseconds in 1..=60000 (anything else is logged and ignored).
fn runtime_config() -> RuntimeConfig {
    let mut config = RuntimeConfig::default();
    if let Ok(value) = std::env::var(CALL_TIMEOUT_ENV) {
        match value.trim().parse::<u64>() {
            Ok(ms) if CALL_TIMEOUT_MS_RANGE.contains(&ms) => {
                config.call_timeout = std::time::Duration::from_millis(ms);
            }
            _ => tracing::warn!(
                variable = CALL_TIMEOUT_ENV,
                value = %value,
                "not a deadline in milliseconds (1..=60000); keeping the default"
            ),
        }
    }
    config
}

impl Plugins {
    /// Builds the engine and loader, loads both slots and the shadow candidate, and starts a
    /// watcher for every plugin that comes from a file. The shipped defaults (`zone-spread`,
    /// `translator-default`) serve a kind that is not configured.
    pub async fn start(config: &PluginsConfig) -> Result<Arc<Plugins>, PluginsError> {
        let engine = PluginEngine::new(runtime_config()).map_err(|error| PluginsError {
            setting: "plugin engine".into(),
            error,
        })?;
        let loader = PluginLoader::new(engine, config.cache_dir.clone());
        let start_slot = async |kind: PluginKind,
                                setting: &str,
                                spec: Option<&PluginSpec>,
                                builtin: &'static [u8]| {
            let fail = |error: PluginError| PluginsError {
                setting: setting.to_string(),
                error,
            };
            let plugin = load_spec(&loader, kind, spec, builtin)
                .await
                .map_err(|f| fail(f.0.error))?;
            match spec {
                Some(spec) => {
                    tracing::info!(setting, plugin = %plugin.identity(), file = %spec.path.display(), "serving the configured plugin");
                }
                None => {
                    tracing::info!(%kind, plugin = %plugin.identity(), "serving the built-in plugin")
                }
            }
            let slot = Arc::new(PluginSlot::new(plugin));
            let watcher = watch_spec(&loader, &slot, spec, setting).map_err(fail)?;
            Ok::<_, PluginsError>((slot, watcher))
        };
        let (placement, placement_watcher) = start_slot(
            PluginKind::Placement,
            "plugins.placement",
            config.placement.as_ref(),
            builtin::ZONE_SPREAD,
        )
        .await?;
        let (translator, translator_watcher) = start_slot(
            PluginKind::Translator,
            "plugins.translator",
            config.translator.as_ref(),
            builtin::TRANSLATOR_DEFAULT,
        )
        .await?;
        let shadow = Arc::new(ShadowPlacement::new(DEFAULT_SHADOW_CONCURRENCY));
        let mut shadow_watcher = None;
        if let Some(spec) = &config.placement_shadow {
            // Validated like the active one: a shadow that does not load stops start-up with
            // one line, as any other bad setting does. At runtime a bad candidate is refused.
            let (slot, watcher) = start_slot(
                PluginKind::Placement,
                "plugins.placement.shadow",
                Some(spec),
                builtin::ZONE_SPREAD,
            )
            .await?;
            tracing::info!(shadow = %slot.current().identity(), "placement shadow running next to the active placement");
            shadow.set(Some(slot));
            shadow_watcher = watcher;
        }
        Ok(Arc::new(Plugins {
            placement,
            translator,
            shadow,
            loader,
            state: tokio::sync::Mutex::new(Applied {
                config: config.clone(),
                placement_watcher,
                translator_watcher,
                shadow_watcher,
            }),
        }))
    }

    /// Applies a new `plugins` section: a changed active spec is loaded and validated, then
    /// swapped in atomically (refused: the old version keeps serving and its watcher keeps
    /// watching; the refusal is recorded on the slot, so the node shows it); a removed,
    /// added or changed shadow stops, starts or replaces shadowing. Unchanged specs are not
    /// touched. `cacheDir` needs a restart.
    pub async fn apply(&self, next: &PluginsConfig) -> ApplyReport {
        let mut state = self.state.lock().await;
        let mut report = ApplyReport::default();
        if next.cache_dir != state.config.cache_dir {
            report.restart_needed.push("plugins.cacheDir".into());
        }
        if next.placement != state.config.placement {
            let setting = "plugins.placement";
            match self
                .reload_active(
                    &self.placement,
                    next.placement.as_ref(),
                    builtin::ZONE_SPREAD,
                    setting,
                    &mut state.placement_watcher,
                )
                .await
            {
                true => {
                    state.config.placement = next.placement.clone();
                    report.applied.push(setting.into());
                }
                false => report.refused.push(setting.into()),
            }
        }
        if next.translator != state.config.translator {
            let setting = "plugins.translator";
            match self
                .reload_active(
                    &self.translator,
                    next.translator.as_ref(),
                    builtin::TRANSLATOR_DEFAULT,
                    setting,
                    &mut state.translator_watcher,
                )
                .await
            {
                true => {
                    state.config.translator = next.translator.clone();
                    report.applied.push(setting.into());
                }
                false => report.refused.push(setting.into()),
            }
        }
        if next.placement_shadow != state.config.placement_shadow {
            let setting = "plugins.placement.shadow";
            match &next.placement_shadow {
                None => {
                    state.shadow_watcher = None;
                    self.shadow.set(None);
                    tracing::info!(setting, "placement shadow stopped");
                    state.config.placement_shadow = None;
                    report.applied.push(setting.into());
                }
                Some(spec) => {
                    match load_spec(
                        &self.loader,
                        PluginKind::Placement,
                        Some(spec),
                        builtin::ZONE_SPREAD,
                    )
                    .await
                    {
                        Ok(plugin) => {
                            let slot = Arc::new(PluginSlot::new(plugin));
                            state.shadow_watcher = None;
                            state.shadow_watcher =
                                watch_spec(&self.loader, &slot, Some(spec), setting)
                                    .unwrap_or_else(|e| {
                                        tracing::warn!(setting, error = %e, "cannot watch the shadow's files; it is not hot-reloaded");
                                        None
                                    });
                            tracing::info!(setting, shadow = %slot.current().identity(), "placement shadow running next to the active placement");
                            self.shadow.set(Some(slot));
                            state.config.placement_shadow = Some(spec.clone());
                            report.applied.push(setting.into());
                        }
                        Err(failure) => {
                            self.shadow.record_refusal(failure.refusal());
                            report.refused.push(setting.into());
                        }
                    }
                }
            }
        }
        report
    }

    /// Loads `spec` for `slot` and swaps it in; on success replaces `watcher` with one for the
    /// new files. Returns whether the spec is now in effect.
    async fn reload_active(
        &self,
        slot: &Arc<PluginSlot>,
        spec: Option<&PluginSpec>,
        builtin: &'static [u8],
        setting: &str,
        watcher: &mut Option<PluginWatcher>,
    ) -> bool {
        let plugin = match load_spec(&self.loader, slot.kind(), spec, builtin).await {
            Ok(p) => p,
            Err(failure) => {
                slot.record_refusal(failure.refusal());
                return false;
            }
        };
        // The old file's watcher goes first, so it cannot swap the old file back in.
        let previous_watcher = watcher.take();
        if !same_version(&slot.current(), &plugin)
            && let Err(e) = slot.swap(plugin)
        {
            slot.record_refusal(RefusedReload {
                at: SystemTime::now(),
                file: spec.map_or_else(|| PathBuf::from("built-in"), |s| s.path.clone()),
                sha256: None,
                reason: e.to_string(),
            });
            *watcher = previous_watcher;
            return false;
        }
        drop(previous_watcher);
        *watcher = watch_spec(&self.loader, slot, spec, setting).unwrap_or_else(|e| {
            tracing::warn!(setting, error = %e, "cannot watch the plugin's files; it is not hot-reloaded");
            None
        });
        tracing::info!(setting, plugin = %slot.current().identity(), "plugins setting applied from the config file");
        true
    }

    /// Watches the daemon's config file (directory watch, so editors' renames and a
    /// ConfigMap's `..data` symlink swap are seen; plus a slow re-read in case an event is
    /// missed) and applies its `plugins` section when it changes ([`Plugins::apply`]). A file
    /// that does not parse or validate is refused as a whole (logged, counted, recorded on the
    /// slot its error names); other sections that changed are logged as needing a restart and
    /// not applied. Runs until `token` is cancelled.
    pub fn watch_config_file(
        self: &Arc<Self>,
        path: PathBuf,
        metrics: Arc<Metrics>,
        token: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let plugins = self.clone();
        async move {
            let wake = Arc::new(tokio::sync::Notify::new());
            let _watcher = match dir_watcher(&path, wake.clone()) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot watch the config file; re-reading it every {CONFIG_POLL:?} instead");
                    None
                }
            };
            let mut reloader = ConfigReloader::new(plugins, path, metrics);
            loop {
                reloader.check().await;
                tokio::select! {
                    () = token.cancelled() => return,
                    () = wake.notified() => {
                        // Debounce: let the writer (or kubelet's symlink swap) finish.
                        tokio::time::sleep(CONFIG_DEBOUNCE).await;
                    }
                    () = tokio::time::sleep(CONFIG_POLL) => {}
                }
            }
        }
    }

    /// Forwards the slots' status (active versions, the shadow, the most recent refused
    /// reload of any of them) to the node until `token` is cancelled.
    pub fn forward_health(
        &self,
        health: watch::Sender<PluginHealth>,
        token: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let mut placement = self.placement.subscribe();
        let mut translator = self.translator.subscribe();
        let mut shadow = self.shadow.subscribe();
        async move {
            loop {
                let shadow_state = shadow.borrow_and_update().clone();
                let mut shadow_slot = shadow_state.slot.as_ref().map(|s| s.subscribe());
                let now = health_of(
                    &placement.borrow_and_update(),
                    &translator.borrow_and_update(),
                    &shadow_state,
                    shadow_slot
                        .as_mut()
                        .map(|s| s.borrow_and_update().clone())
                        .as_ref(),
                );
                health.send_if_modified(|h| {
                    let changed = *h != now;
                    *h = now;
                    changed
                });
                let shadow_slot_changed = async {
                    match &mut shadow_slot {
                        Some(rx) => rx.changed().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    biased;
                    () = token.cancelled() => return,
                    r = placement.changed() => if r.is_err() { return },
                    r = translator.changed() => if r.is_err() { return },
                    r = shadow.changed() => if r.is_err() { return },
                    r = shadow_slot_changed => if r.is_err() { return },
                }
            }
        }
    }
}

/// The node's view: both active versions, the shadow, and the newest refusal of any of them.
fn health_of(
    placement: &vnode_plugin_host::SlotStatus,
    translator: &vnode_plugin_host::SlotStatus,
    shadow: &ShadowState,
    shadow_slot: Option<&vnode_plugin_host::SlotStatus>,
) -> PluginHealth {
    let mut health = node::health_from_slots(placement, translator);
    health.placement_shadow = shadow_slot.map(|s| node::active(&s.active));
    let refusals = [
        ("placement", placement.last_refused.as_ref()),
        ("translator", translator.last_refused.as_ref()),
        (
            "placement shadow",
            shadow_slot.and_then(|s| s.last_refused.as_ref()),
        ),
        ("placement shadow", shadow.last_refused.as_ref()),
    ];
    health.last_refused_reload = refusals
        .into_iter()
        .filter_map(|(slot, r)| r.map(|r| (slot, r)))
        .max_by_key(|(_, r)| r.at)
        .map(|(slot, r)| node::refused(slot, r));
    health
}

/// Quiet time after a config file event before it is read.
const CONFIG_DEBOUNCE: Duration = Duration::from_millis(200);
/// The config file is re-read this often even without an event (cheap: a small file, and
/// nothing happens unless its content changed).
const CONFIG_POLL: Duration = Duration::from_secs(10);

/// Watches `path`'s directory (not the file: editors rename over it and a ConfigMap volume
/// re-points `..data`) and wakes `wake` on events for its name or any `..*` entry.
fn dir_watcher(
    path: &Path,
    wake: Arc<tokio::sync::Notify>,
) -> Result<notify::RecommendedWatcher, String> {
    use notify::Watcher;
    let name = path
        .file_name()
        .ok_or_else(|| format!("{} is not a file path", path.display()))?
        .to_os_string();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        let relevant = event.paths.iter().any(|p| {
            p.file_name()
                .is_some_and(|n| n == name || n.to_string_lossy().starts_with(".."))
        });
        if relevant {
            wake.notify_one();
        }
    })
    .map_err(|e| e.to_string())?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    Ok(watcher)
}

/// Re-reads the config file and applies what changed.
struct ConfigReloader {
    plugins: Arc<Plugins>,
    path: PathBuf,
    metrics: Arc<Metrics>,
    /// The other sections as they were at start-up (what is running).
    started_with: Option<FileSnapshot>,
    /// The content last acted on: nothing happens until it changes.
    last_text: Option<String>,
}

impl ConfigReloader {
    fn new(plugins: Arc<Plugins>, path: PathBuf, metrics: Arc<Metrics>) -> ConfigReloader {
        let started_with = FileSnapshot::read(&path).ok();
        ConfigReloader {
            plugins,
            path,
            metrics,
            started_with,
            last_text: None,
        }
    }

    async fn check(&mut self) {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            // Mid-swap (ConfigMap) or mid-rename (editor): the next event or poll sees it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                if self.last_text.is_some() {
                    tracing::warn!(file = %self.path.display(), error = %e, "cannot read the config file; keeping the running plugins");
                }
                return;
            }
        };
        if self.last_text.as_deref() == Some(text.as_str()) {
            return;
        }
        let first = self.last_text.is_none();
        self.last_text = Some(text);
        let snapshot = match FileSnapshot::read(&self.path) {
            Ok(s) => s,
            Err(e) => {
                self.metrics.plugin_config_reload("refused");
                let refusal = RefusedReload {
                    at: SystemTime::now(),
                    file: self.path.clone(),
                    sha256: None,
                    reason: e.to_string(),
                };
                // Shown on the node under the slot the error names (placement otherwise).
                if e.setting.contains("plugins.placement.shadow") {
                    self.plugins.shadow.record_refusal(refusal);
                } else if e.setting.contains("plugins.translator") {
                    self.plugins.translator.record_refusal(refusal);
                } else {
                    self.plugins.placement.record_refusal(refusal);
                }
                return;
            }
        };
        match &self.started_with {
            Some(started) => {
                let changed = started.changed_sections(&snapshot);
                if !changed.is_empty() && !first {
                    self.metrics.plugin_config_reload("restart_needed");
                    tracing::warn!(file = %self.path.display(), sections = %changed.join(","), "config file sections other than plugins changed; they take effect after a restart (not applied)");
                }
            }
            None => self.started_with = Some(snapshot.clone()),
        }
        let report = self.plugins.apply(&snapshot.plugins).await;
        if !report.restart_needed.is_empty() {
            tracing::warn!(file = %self.path.display(), settings = %report.restart_needed.join(","), "plugin settings changed that take effect after a restart (not applied)");
        }
        if first && report == ApplyReport::default() {
            // The initial read: what start-up loaded.
            return;
        }
        self.metrics.plugin_config_reload(report.result());
        tracing::info!(
            file = %self.path.display(),
            applied = %report.applied.join(","),
            refused = %report.refused.join(","),
            "config file re-read"
        );
    }
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
                config_file: Some(conf),
                ..PluginSpec::new(&wasm)
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
            translator: Some(PluginSpec::new(wasm)),
            ..PluginsConfig::default()
        };
        let e = Plugins::start(&config)
            .await
            .expect_err("refused")
            .to_string();
        assert!(e.starts_with("plugin setting plugins.translator: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    /// A ConfigMap-like volume: `dir/..data` → `..<n>`, `dir/<name>` → `..data/<name>`.
    struct ConfigMapDir {
        dir: std::path::PathBuf,
        generation: u32,
    }

    impl ConfigMapDir {
        fn new(dir: &std::path::Path, files: &[(&str, &[u8])]) -> ConfigMapDir {
            let mut cm = ConfigMapDir {
                dir: dir.to_path_buf(),
                generation: 0,
            };
            cm.update(files);
            for (name, _) in files {
                std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name))
                    .expect("symlink");
            }
            cm
        }

        /// What the kubelet does on a ConfigMap update: a new timestamped directory, then an
        /// atomic rename of a new `..data` symlink over the old one.
        fn update(&mut self, files: &[(&str, &[u8])]) {
            self.generation += 1;
            let data = format!("..gen{}", self.generation);
            std::fs::create_dir(self.dir.join(&data)).expect("mkdir");
            for (name, bytes) in files {
                std::fs::write(self.dir.join(&data).join(name), bytes).expect("write");
            }
            let tmp = self.dir.join("..data_tmp");
            std::os::unix::fs::symlink(&data, &tmp).expect("symlink");
            std::fs::rename(&tmp, self.dir.join("..data")).expect("rename");
        }
    }

    fn spec(path: &std::path::Path, config: serde_json::Value) -> PluginSpec {
        PluginSpec {
            config,
            ..PluginSpec::new(path)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn apply_promotes_refuses_and_starts_and_stops_the_shadow() {
        let dir = tempfile::tempdir().expect("tempdir");
        let zone = dir.path().join("zone-spread.wasm");
        let cost = dir.path().join("cost-aware.wasm");
        let junk = dir.path().join("junk.wasm");
        std::fs::write(&zone, builtin::ZONE_SPREAD).expect("write");
        std::fs::write(&cost, builtin::COST_AWARE).expect("write");
        std::fs::write(&junk, b"not a component").expect("write");
        let start = PluginsConfig {
            placement: Some(spec(&zone, serde_json::Value::Null)),
            ..PluginsConfig::default()
        };
        let plugins = Plugins::start(&start).await.expect("start");
        assert!(!plugins.shadow.is_enabled());

        // Nothing changed: nothing happens.
        assert_eq!(plugins.apply(&start).await, ApplyReport::default());

        // A shadow is added (inline config).
        let with_shadow = PluginsConfig {
            placement_shadow: Some(spec(&cost, serde_json::json!("on-demand-fallback = false"))),
            ..start.clone()
        };
        let report = plugins.apply(&with_shadow).await;
        assert_eq!(report.applied, ["plugins.placement.shadow"]);
        let shadow = plugins.shadow.candidate().expect("shadow running");
        assert_eq!(shadow.status().active.name, "cost-aware");
        assert_eq!(plugins.placement.status().active.name, "zone-spread");

        // A broken shadow replacement is refused; the running shadow keeps shadowing and the
        // active path is untouched.
        let broken_shadow = PluginsConfig {
            placement_shadow: Some(spec(&junk, serde_json::Value::Null)),
            ..start.clone()
        };
        let report = plugins.apply(&broken_shadow).await;
        assert_eq!(report.refused, ["plugins.placement.shadow"]);
        assert_eq!(
            plugins
                .shadow
                .candidate()
                .expect("still running")
                .status()
                .active
                .name,
            "cost-aware"
        );
        assert!(plugins.shadow.subscribe().borrow().last_refused.is_some());
        assert_eq!(plugins.placement.status().active.name, "zone-spread");

        // Promotion: the candidate becomes the active placement, the shadow stops.
        let promoted = PluginsConfig {
            placement: Some(spec(&cost, serde_json::json!("on-demand-fallback = false"))),
            ..PluginsConfig::default()
        };
        let report = plugins.apply(&promoted).await;
        assert_eq!(
            report.applied,
            ["plugins.placement", "plugins.placement.shadow"]
        );
        let status = plugins.placement.status();
        assert_eq!(status.active.name, "cost-aware");
        assert_eq!(status.generation, 1);
        assert!(!plugins.shadow.is_enabled());

        // Only the limits change: a new version with them serves; out-of-range limits are
        // refused and the previous version (with its limits) keeps serving.
        let engine_default = plugins.placement.current().limits();
        let limited = PluginsConfig {
            placement: Some(PluginSpec {
                call_timeout_ms: Some(250),
                memory_limit_mib: Some(32),
                ..spec(&cost, serde_json::json!("on-demand-fallback = false"))
            }),
            ..PluginsConfig::default()
        };
        let report = plugins.apply(&limited).await;
        assert_eq!(report.applied, ["plugins.placement"]);
        let limits = plugins.placement.current().limits();
        assert_eq!(limits.call_timeout, Duration::from_millis(250));
        assert_eq!(limits.memory_limit_bytes, 32 << 20);
        assert_ne!(limits, engine_default);
        assert_eq!(plugins.placement.status().generation, 2);
        let out_of_range = PluginsConfig {
            placement: Some(PluginSpec {
                call_timeout_ms: Some(0),
                ..spec(&cost, serde_json::Value::Null)
            }),
            ..PluginsConfig::default()
        };
        let report = plugins.apply(&out_of_range).await;
        assert_eq!(report.refused, ["plugins.placement"]);
        let refused = plugins.placement.status().last_refused.expect("recorded");
        assert!(refused.reason.contains("callTimeoutMs"), "{refused:?}");
        assert_eq!(plugins.placement.current().limits(), limits);
        // The translator kept the engine's limits throughout.
        assert_eq!(plugins.translator.current().limits(), engine_default);
        let report = plugins.apply(&promoted).await;
        assert_eq!(report.applied, ["plugins.placement"]);
        assert_eq!(plugins.placement.current().limits(), engine_default);

        // A broken promotion is refused: cost-aware keeps serving, the refusal is on the slot.
        for bad in [junk.clone(), dir.path().join("missing.wasm")] {
            let broken = PluginsConfig {
                placement: Some(spec(&bad, serde_json::Value::Null)),
                ..PluginsConfig::default()
            };
            let report = plugins.apply(&broken).await;
            assert_eq!(report.refused, ["plugins.placement"]);
            let status = plugins.placement.status();
            assert_eq!(status.active.name, "cost-aware");
            assert_eq!(status.last_refused.expect("recorded").file, bad);
        }

        // Back to the built-in: the spec removed.
        let report = plugins.apply(&PluginsConfig::default()).await;
        assert_eq!(report.applied, ["plugins.placement"]);
        let status = plugins.placement.status();
        assert_eq!(status.active.name, "zone-spread");
        assert!(status.active.source.is_none());

        // The node shows the shadow next to the active versions.
        let shadow_slot = PluginSlot::new(shadow.current());
        let health = health_of(
            &plugins.placement.status(),
            &plugins.translator.status(),
            &ShadowState::default(),
            Some(&shadow_slot.status()),
        );
        assert_eq!(
            health.placement_shadow.expect("shadow shown").name,
            "cost-aware"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_config_file_is_watched_through_a_configmap_swap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plugins_dir = dir.path().join("plugins");
        std::fs::create_dir(&plugins_dir).expect("mkdir");
        let zone = plugins_dir.join("zone-spread.wasm");
        let cost = plugins_dir.join("cost-aware.wasm");
        std::fs::write(&zone, builtin::ZONE_SPREAD).expect("write");
        std::fs::write(&cost, builtin::COST_AWARE).expect("write");
        let config = |active: &std::path::Path, shadow: Option<&std::path::Path>, poll: &str| {
            let mut text = format!(
                "intervals: {{podStatusPoll: {poll}}}\nplugins:\n  placement:\n    path: {}\n",
                active.display()
            );
            if let Some(shadow) = shadow {
                text.push_str(&format!("    shadow: {{path: {}}}\n", shadow.display()));
            }
            text.into_bytes()
        };
        let cm_dir = dir.path().join("config");
        std::fs::create_dir(&cm_dir).expect("mkdir");
        let mut cm = ConfigMapDir::new(&cm_dir, &[("vnode.yaml", &config(&zone, None, "2s"))]);
        let path = cm_dir.join("vnode.yaml");
        let snapshot = FileSnapshot::read(&path).expect("valid");
        let plugins = Plugins::start(&snapshot.plugins).await.expect("start");
        let metrics = Arc::new(Metrics::new());
        let token = CancellationToken::new();
        let task =
            tokio::spawn(plugins.watch_config_file(path.clone(), metrics.clone(), token.clone()));
        let (htx, mut hrx) = watch::channel(PluginHealth::default());
        tokio::spawn(plugins.forward_health(htx, token.clone()));

        // Shadow added through a ConfigMap update: shadowing starts, the node shows it.
        cm.update(&[("vnode.yaml", &config(&zone, Some(&cost), "2s"))]);
        within(
            "shadow on the node",
            hrx.wait_for(|h| {
                h.placement_shadow
                    .as_ref()
                    .is_some_and(|s| s.name == "cost-aware")
            }),
        )
        .await
        .expect("forwarder alive");
        assert!(plugins.shadow.is_enabled());

        // Promotion, and another section changed (logged as needing a restart, not applied).
        cm.update(&[("vnode.yaml", &config(&cost, None, "5s"))]);
        let mut status = plugins.placement.subscribe();
        within(
            "promotion",
            status.wait_for(|s| s.active.name == "cost-aware"),
        )
        .await
        .expect("slot alive");
        within(
            "shadow gone from the node",
            hrx.wait_for(|h| h.placement_shadow.is_none()),
        )
        .await
        .expect("forwarder alive");
        let text = metrics.encode();
        assert!(
            text.contains("vnode_plugin_config_reloads_total{result=\"restart_needed\"} 1")
                && text.contains("vnode_plugin_config_reloads_total{result=\"applied\"}"),
            "{text}"
        );

        // A config file that does not validate is refused as a whole and shown on the node.
        cm.update(&[(
            "vnode.yaml",
            &config(&plugins_dir.join("missing.wasm"), None, "5s"),
        )]);
        within(
            "refusal on the node",
            hrx.wait_for(|h| {
                h.last_refused_reload
                    .as_ref()
                    .is_some_and(|r| r.reason.contains("missing.wasm"))
            }),
        )
        .await
        .expect("forwarder alive");
        assert_eq!(plugins.placement.status().active.name, "cost-aware");
        assert!(
            metrics
                .encode()
                .contains("vnode_plugin_config_reloads_total{result=\"refused\"}")
        );
        token.cancel();
        task.await.expect("watcher task ends");
    }

    async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(30), f)
            .await
            .unwrap_or_else(|_| panic!("{what} within 30 s"))
    }
}
