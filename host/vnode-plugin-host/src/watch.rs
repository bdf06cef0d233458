//! Hot reload: watch a plugin file (and its configuration file) and swap the slot's version
//! when the content changes and the candidate validates.
//!
//! What the file system really does, and how each case is handled:
//! - **Editors** save by writing a temporary file and renaming it over the original, which
//!   kills a watch on the file itself. We watch the *directory* (non-recursively) and filter by
//!   name.
//! - **Kubernetes ConfigMap volumes**: `dir/placement.wasm` is a symlink to
//!   `..data/placement.wasm`; an update re-points the `..data` symlink. Events on `..*` names
//!   count, and files are read through the symlink.
//! - **`kubectl cp`** writes in place, so a watcher can see a half-written file. Events are
//!   debounced until the directory is quiet; a candidate that fails to parse is retried once
//!   after a pause before it is refused, and a refused candidate (same bytes and config) is
//!   never retried or logged again. Garbage is never swapped in: every candidate goes through
//!   the full [`PluginLoader`] validation.
//! - Identical content (same sha256 of plugin and configuration as the serving version) is
//!   ignored; ConfigMap updates re-link every key even when only one changed.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::{Duration, SystemTime};

use notify::{RecursiveMode, Watcher};

use crate::error::PluginError;
use crate::loader::{PluginLoader, PluginSource, sha256_hex};
use crate::slot::{PluginSlot, RefusedReload};

/// What to watch for one slot.
#[derive(Debug, Clone)]
pub struct WatchTarget {
    /// The slot to update.
    pub slot: Arc<PluginSlot>,
    /// The plugin component (may be a symlink, e.g. into a ConfigMap's `..data`).
    pub plugin_file: PathBuf,
    /// The plugin's configuration file; `None` means the empty configuration. Editing it
    /// hot-reloads the plugin with the new configuration (validated by `init` first).
    pub config_file: Option<PathBuf>,
}

/// Timing of the watcher.
#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    /// Quiet time after the last event before the files are read.
    pub debounce: Duration,
    /// Pause before retrying a candidate that failed to parse (it may still be being written).
    pub partial_write_retry: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            debounce: Duration::from_millis(150),
            partial_write_retry: Duration::from_millis(500),
        }
    }
}

/// A running watcher; stops when dropped.
pub struct PluginWatcher {
    _watcher: notify::RecommendedWatcher,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for PluginWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginWatcher").finish_non_exhaustive()
    }
}

impl Drop for PluginWatcher {
    fn drop(&mut self) {
        // Dropping the notify watcher (after this fn) closes the channel and the thread exits;
        // we do not join here so a drop never blocks on a compile in progress.
        let _ = self.thread.take();
    }
}

impl PluginWatcher {
    /// Starts watching. Checks the files once right away (so a file that differs from what the
    /// slot serves is picked up), then on every change.
    pub fn start(
        loader: PluginLoader,
        target: WatchTarget,
        options: WatchOptions,
    ) -> Result<PluginWatcher, PluginError> {
        let mut names: BTreeSet<OsString> = BTreeSet::new();
        let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
        for file in std::iter::once(&target.plugin_file).chain(target.config_file.as_ref()) {
            let dir = parent_dir(file);
            let name = file.file_name().ok_or_else(|| PluginError::Io {
                path: file.clone(),
                message: "not a file path".into(),
            })?;
            names.insert(name.to_os_string());
            dirs.insert(dir);
        }
        let (tx, rx) = channel::<()>();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else { return };
            let relevant = event.paths.iter().any(|p| {
                p.file_name()
                    .is_some_and(|n| names.contains(n) || n.to_string_lossy().starts_with(".."))
            });
            if relevant {
                let _ = tx.send(());
            }
        })
        .map_err(|e| PluginError::Internal(format!("starting the file watcher: {e}")))?;
        for dir in &dirs {
            watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|e| PluginError::Io {
                    path: dir.clone(),
                    message: format!("cannot watch: {e}"),
                })?;
        }
        let thread = std::thread::Builder::new()
            .name(format!("vnode-plugin-watch-{}", target.slot.kind()))
            .spawn(move || {
                let mut state = ReloadState::default();
                state.check(&loader, &target, options);
                loop {
                    let wait = if state.retry_pending {
                        options.partial_write_retry
                    } else {
                        Duration::from_secs(3600)
                    };
                    match rx.recv_timeout(wait) {
                        Ok(()) => {}
                        Err(RecvTimeoutError::Timeout) if state.retry_pending => {}
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                    // Debounce: wait until nothing happened for `debounce`.
                    loop {
                        match rx.recv_timeout(options.debounce) {
                            Ok(()) => continue,
                            Err(RecvTimeoutError::Timeout) => break,
                            Err(RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    state.check(&loader, &target, options);
                }
            })
            .map_err(|e| PluginError::Internal(format!("starting the watcher thread: {e}")))?;
        Ok(PluginWatcher {
            _watcher: watcher,
            thread: Some(thread),
        })
    }
}

fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[derive(Default)]
struct ReloadState {
    /// (plugin sha256, config sha256) of the last refused candidate: never retried or logged
    /// again until the content changes.
    refused: Option<(String, String)>,
    /// A candidate failed to parse once; look again after a pause before refusing it.
    retry_pending: bool,
    /// The candidate that is waiting for that retry.
    retrying: Option<(String, String)>,
}

impl ReloadState {
    fn check(&mut self, loader: &PluginLoader, target: &WatchTarget, _options: WatchOptions) {
        self.retry_pending = false;
        let slot = &target.slot;
        let bytes = match std::fs::read(&target.plugin_file) {
            Ok(b) => b,
            // Mid-rename or being replaced: look again shortly, quietly.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.retry_pending = true;
                return;
            }
            Err(e) => {
                self.refuse(
                    slot,
                    &target.plugin_file,
                    None,
                    ("".into(), "".into()),
                    format!("cannot read the plugin: {e}"),
                );
                return;
            }
        };
        let config = match &target.config_file {
            None => String::new(),
            Some(path) => match std::fs::read_to_string(path) {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.retry_pending = true;
                    return;
                }
                Err(e) => {
                    self.refuse(
                        slot,
                        path,
                        None,
                        ("".into(), "".into()),
                        format!("cannot read the plugin configuration: {e}"),
                    );
                    return;
                }
            },
        };
        let key = (sha256_hex(&bytes), sha256_hex(config.as_bytes()));
        let serving = slot.current();
        if serving.identity().sha256 == key.0 && serving.identity().config_sha256 == key.1 {
            self.retrying = None;
            return;
        }
        if self.refused.as_ref() == Some(&key) {
            return;
        }
        let source = PluginSource {
            bytes,
            path: Some(target.plugin_file.clone()),
        };
        // The limits belong to the spec, not to the file: a new file or configuration keeps
        // the serving version's.
        match loader.load_blocking_with_limits(
            &source,
            Some(slot.kind()),
            &config,
            serving.limits(),
        ) {
            Ok(plugin) => {
                if let Err(e) = slot.swap(plugin) {
                    self.refuse(
                        slot,
                        &target.plugin_file,
                        Some(key.0.clone()),
                        key,
                        e.to_string(),
                    );
                    return;
                }
                self.refused = None;
                self.retrying = None;
            }
            Err(e) => {
                let maybe_partial = matches!(
                    e,
                    PluginError::NotWasm { .. } | PluginError::InvalidComponent(_)
                );
                if maybe_partial && self.retrying.as_ref() != Some(&key) {
                    // Possibly still being written (`kubectl cp`): look again after a pause.
                    tracing::debug!(file = %target.plugin_file.display(), error = %e, "plugin candidate does not parse yet; retrying shortly");
                    self.retrying = Some(key);
                    self.retry_pending = true;
                    return;
                }
                self.retrying = None;
                self.refuse(
                    slot,
                    &target.plugin_file,
                    Some(key.0.clone()),
                    key,
                    e.to_string(),
                );
            }
        }
    }

    fn refuse(
        &mut self,
        slot: &PluginSlot,
        file: &Path,
        sha256: Option<String>,
        key: (String, String),
        reason: String,
    ) {
        slot.record_refusal(RefusedReload {
            at: SystemTime::now(),
            file: file.to_path_buf(),
            sha256,
            reason,
        });
        self.refused = Some(key);
    }
}
