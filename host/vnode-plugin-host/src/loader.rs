//! Bytes → a validated, ready [`LoadedPlugin`]: header check, content-addressed compile cache,
//! world and contract-version detection from the component's exports, pre-linking, `init`
//! with the configuration, and a smoke decision on a built-in sample pod.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use crate::contract::{self, SUPPORTED_VERSIONS};
use crate::contract::{PlacementPre, TranslatorPre};
use crate::engine::PluginEngine;
use crate::error::PluginError;
use crate::identity::{PluginIdentity, PluginKind};
use crate::plugin::{Bound, LoadedPlugin, WorldPre, classify, instantiate};
use crate::samples;
use crate::spec::PluginLimits;

/// Hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Loads plugins. One per process, shared by the CLI and the daemon.
#[derive(Debug, Clone)]
pub struct PluginLoader {
    engine: Arc<PluginEngine>,
    cache_dir: Option<PathBuf>,
}

/// What the loader was given: the component bytes and where they came from.
#[derive(Debug, Clone)]
pub struct PluginSource {
    /// The `.wasm` component.
    pub bytes: Vec<u8>,
    /// The file it was read from (`None` for built-ins); shown in errors and on the node.
    pub path: Option<PathBuf>,
}

impl PluginLoader {
    /// A loader on `engine`, caching compiled plugins in `cache_dir` (created if missing) when
    /// given, so a restart deserializes instead of recompiling.
    pub fn new(engine: Arc<PluginEngine>, cache_dir: Option<PathBuf>) -> PluginLoader {
        PluginLoader { engine, cache_dir }
    }

    /// The engine plugins run on.
    pub fn engine(&self) -> &Arc<PluginEngine> {
        &self.engine
    }

    /// Reads a plugin file (following symlinks, e.g. a ConfigMap's `..data` link).
    pub fn read(path: &Path) -> Result<PluginSource, PluginError> {
        let bytes = std::fs::read(path).map_err(|e| PluginError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(PluginSource {
            bytes,
            path: Some(path.to_path_buf()),
        })
    }

    /// Loads on a blocking thread (compilation takes tens to hundreds of milliseconds), under
    /// the engine's default limits.
    pub async fn load(
        &self,
        source: PluginSource,
        expected: Option<PluginKind>,
        config: String,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        let limits = self.engine.default_limits();
        self.load_with_limits(source, expected, config, limits)
            .await
    }

    /// [`PluginLoader::load`] with this version's own limits.
    pub async fn load_with_limits(
        &self,
        source: PluginSource,
        expected: Option<PluginKind>,
        config: String,
        limits: PluginLimits,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        let loader = self.clone();
        tokio::task::spawn_blocking(move || {
            loader.load_blocking_with_limits(&source, expected, &config, limits)
        })
        .await
        .map_err(|e| PluginError::Internal(format!("plugin load task failed: {e}")))?
    }

    /// Validates and loads a plugin on the current thread, under the engine's default
    /// limits. With `expected`, a plugin of the other kind is refused
    /// ([`PluginError::WrongWorld`]); without, the kind is detected.
    pub fn load_blocking(
        &self,
        source: &PluginSource,
        expected: Option<PluginKind>,
        config: &str,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        self.load_blocking_with_limits(source, expected, config, self.engine.default_limits())
    }

    /// [`PluginLoader::load_blocking`] with this version's own limits: `init`, the smoke
    /// decision and every later call run under them.
    pub fn load_blocking_with_limits(
        &self,
        source: &PluginSource,
        expected: Option<PluginKind>,
        config: &str,
        limits: PluginLimits,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        check_header(&source.bytes)?;
        let sha256 = sha256_hex(&source.bytes);
        let component = self.compile(&source.bytes, &sha256)?;
        let (kind, version) = detect_world(&component, &self.engine, expected)?;

        let engine = &self.engine;
        let link = |e: wasmtime::Error| PluginError::Link(format!("{e:#}"));
        let pre = match kind {
            PluginKind::Placement => WorldPre::Placement(
                PlacementPre::new(
                    &version,
                    engine
                        .placement_linker
                        .instantiate_pre(&component)
                        .map_err(link)?,
                )
                .map_err(link)?,
            ),
            PluginKind::Translator => WorldPre::Translator(
                TranslatorPre::new(
                    &version,
                    engine
                        .translator_linker
                        .instantiate_pre(&component)
                        .map_err(link)?,
                )
                .map_err(link)?,
            ),
        };

        // info + init on a throwaway instance.
        let mut ready = instantiate(engine, &pre, None, &limits, false)?;
        let store = &mut ready.store;
        let (info, init) = match &ready.bound {
            Bound::Placement(b) => {
                let p = b;
                let info = p
                    .call_info(&mut *store)
                    .map_err(|e| classify(e, store, &limits))?;
                (
                    info,
                    p.call_init(&mut *store, config)
                        .map_err(|e| classify(e, store, &limits))?,
                )
            }
            Bound::Translator(b) => {
                let p = b;
                let info = p
                    .call_info(&mut *store)
                    .map_err(|e| classify(e, store, &limits))?;
                (
                    info,
                    p.call_init(&mut *store, config)
                        .map_err(|e| classify(e, store, &limits))?,
                )
            }
        };
        init.map_err(|msg| {
            PluginError::InitRejected(crate::state::truncate_utf8(&msg, 4096).to_string())
        })?;
        let bad_info = |what: &str| PluginError::InvalidOutput(format!("info() returned {what}"));
        if info.name.trim().is_empty() {
            return Err(bad_info("an empty name"));
        }
        if info.name.len() > 128 || info.version.len() > 128 || info.description.len() > 1024 {
            return Err(bad_info("an over-long name, version or description"));
        }

        let identity = Arc::new(PluginIdentity {
            kind,
            name: info.name,
            version: info.version,
            description: info.description,
            contract_version: version,
            sha256,
            config_sha256: sha256_hex(config.as_bytes()),
            source: source.path.clone(),
            loaded_at: SystemTime::now(),
        });
        let plugin = Arc::new(LoadedPlugin::new(
            identity,
            config.to_string(),
            engine.clone(),
            pre,
            limits,
        ));
        smoke_test(&plugin)?;
        plugin.forget_call_times();
        Ok(plugin)
    }

    /// Compiles, or loads the compiled artifact from the cache. A cache problem is logged and
    /// costs a recompile, never a failed load.
    fn compile(&self, bytes: &[u8], sha256: &str) -> Result<Component, PluginError> {
        let engine = &self.engine.engine;
        let compile = || {
            Component::new(engine, bytes)
                .map_err(|e| PluginError::InvalidComponent(format!("{e:#}")))
        };
        let Some(dir) = &self.cache_dir else {
            return compile();
        };
        let path = dir.join(format!(
            "{sha256}-{:016x}.cwasm",
            self.engine.compatibility_hash()
        ));
        if let Ok(data) = std::fs::read(&path) {
            match deserialize_verified(engine, &data) {
                Some(component) => return Ok(component),
                None => {
                    tracing::warn!(path = %path.display(), "compiled plugin cache entry unusable; recompiling")
                }
            }
        }
        let component = compile()?;
        if let Err(e) = write_cache_entry(dir, &path, &component) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the compiled plugin cache");
        }
        Ok(component)
    }
}

/// Cache entry layout: 32 bytes of sha256 over the payload, then wasmtime's serialized
/// component. Written to a temporary file and renamed into place, so readers never see a
/// partial entry; entries are immutable once named.
fn write_cache_entry(dir: &Path, path: &Path, component: &Component) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let payload = component.serialize().map_err(|e| e.to_string())?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| e.to_string())?;
    use std::io::Write;
    tmp.write_all(&Sha256::digest(&payload))
        .map_err(|e| e.to_string())?;
    tmp.write_all(&payload).map_err(|e| e.to_string())?;
    tmp.persist(path).map_err(|e| e.to_string())?;
    Ok(())
}

/// Deserializes a cache entry after checking its digest; `None` if it is corrupt or was made
/// by an incompatible engine (wasmtime checks that itself and errors safely).
#[allow(unsafe_code)]
fn deserialize_verified(engine: &wasmtime::Engine, data: &[u8]) -> Option<Component> {
    let (digest, payload) = data.split_at_checked(32)?;
    if Sha256::digest(payload).as_slice() != digest {
        return None;
    }
    // SAFETY: `Component::deserialize` requires bytes produced by `Component::serialize` of a
    // compatible engine and not tampered with. The entry is in vnode's own cache directory,
    // named by the sha256 of the source and this engine's compatibility hash, written by this
    // function's counterpart via temp-file + rename, and its payload digest was just verified.
    // We deserialize from memory, so a later change to the file cannot affect this component.
    unsafe { Component::deserialize(engine, payload).ok() }
}

/// Rejects non-wasm bytes and core modules before compiling anything.
pub fn check_header(bytes: &[u8]) -> Result<(), PluginError> {
    if bytes.len() < 8 {
        return Err(PluginError::NotWasm {
            detail: format!("the file is only {} bytes", bytes.len()),
        });
    }
    if &bytes[..4] != b"\0asm" {
        let detail = if bytes[..4]
            .iter()
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
        {
            format!(
                "it starts with the text {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(16)])
            )
        } else {
            format!("it starts with bytes {}", hex::encode(&bytes[..4]))
        };
        return Err(PluginError::NotWasm { detail });
    }
    match bytes[4..8] {
        [1, 0, 0, 0] => Err(PluginError::NotAComponent),
        [_, _, 1, 0] => Ok(()),
        _ => Err(PluginError::InvalidComponent(format!(
            "unknown WebAssembly version/layer {}",
            hex::encode(&bytes[4..8])
        ))),
    }
}

/// Finds which world the component implements and against which contract version, from its
/// exports (`vnode:plugin/placement@0.1.0` → placement, 0.1.0).
fn detect_world(
    component: &Component,
    engine: &PluginEngine,
    expected: Option<PluginKind>,
) -> Result<(PluginKind, String), PluginError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(&engine.engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let found = [PluginKind::Placement, PluginKind::Translator]
        .into_iter()
        .find_map(|kind| {
            let prefix = format!("{}/{}@", contract::PACKAGE, kind.interface());
            exports
                .iter()
                .find_map(|name| name.strip_prefix(&prefix).map(|v| (kind, v.to_string())))
        });
    let Some((kind, version)) = found else {
        let expected = expected.unwrap_or(PluginKind::Placement);
        let found = if exports.is_empty() {
            "exports nothing".to_string()
        } else {
            format!("exports {} (no vnode:plugin world)", exports.join(", "))
        };
        return Err(PluginError::WrongWorld {
            expected,
            expected_world: expected.world(),
            found,
        });
    };
    if let Some(expected) = expected
        && expected != kind
    {
        return Err(PluginError::WrongWorld {
            expected,
            expected_world: expected.world(),
            found: format!("is a {kind} plugin (world `{}`)", kind.world()),
        });
    }
    if !SUPPORTED_VERSIONS.contains(&version.as_str()) {
        return Err(PluginError::UnsupportedContractVersion {
            plugin: version,
            host_supported: SUPPORTED_VERSIONS
                .iter()
                .map(|v| (*v).to_string())
                .collect(),
        });
    }
    Ok((kind, version))
}

/// One decision on the built-in sample, under the real limits.
fn smoke_test(plugin: &LoadedPlugin) -> Result<(), PluginError> {
    let smoke = |e: PluginError| PluginError::SmokeFailed(Box::new(e));
    match plugin.kind() {
        PluginKind::Placement => {
            let (pod, context) = samples::placement_sample();
            plugin
                .place_blocking(&pod, context)
                .map_err(|e| smoke(e.error))?;
        }
        PluginKind::Translator => {
            let decided = plugin
                .translate_blocking(samples::translate_sample())
                .map_err(|e| smoke(e.error))?;
            if let Err(e) = decided.value {
                return Err(smoke(PluginError::InvalidOutput(format!(
                    "it refused the sample pod: {e:?}"
                ))));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_check_names_the_problem() {
        assert!(matches!(
            check_header(b"hello world, not wasm"),
            Err(PluginError::NotWasm { .. })
        ));
        assert!(matches!(
            check_header(b"\0as"),
            Err(PluginError::NotWasm { .. })
        ));
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(PluginError::NotAComponent)
        ));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
        let err = check_header(b"#!/bin/sh\necho hi\n").expect_err("text");
        assert!(err.to_string().contains("#!/bin/sh"), "{err}");
    }
}
