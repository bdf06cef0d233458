//! Helpers shared by the runtime and reload tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use vnode_plugin_host::contract::Decision;
use vnode_plugin_host::{
    PluginEngine, PluginKind, PluginLoader, PluginSource, RuntimeConfig, builtin,
};

pub fn engine() -> Arc<PluginEngine> {
    PluginEngine::new(RuntimeConfig {
        warm_instances: 2,
        ..RuntimeConfig::default()
    })
    .expect("engine")
}

pub fn loader() -> PluginLoader {
    PluginLoader::new(engine(), None)
}

/// A loader whose call deadline (wall-clock, by epochs) is far longer than any scheduling
/// stall, for tests about something other than deadlines: with more runnable threads than
/// cores a descheduled call would otherwise time out whatever the plugin does.
pub fn patient_loader() -> PluginLoader {
    let engine = PluginEngine::new(RuntimeConfig {
        warm_instances: 2,
        call_timeout: Duration::from_secs(10),
        ..RuntimeConfig::default()
    })
    .expect("engine");
    PluginLoader::new(engine, None)
}

pub fn source(bytes: &[u8]) -> PluginSource {
    PluginSource {
        bytes: bytes.to_vec(),
        path: None,
    }
}

pub fn hostile_bytes() -> Vec<u8> {
    std::fs::read(builtin::HOSTILE_PATH).expect("the hostile fixture is built by the build script")
}

/// The same component with a custom section appended: new content hash, same behaviour.
pub fn variant(bytes: &[u8], tag: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"vnode-test-variant";
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name);
    body.extend_from_slice(tag.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0);
    leb(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

pub fn load_placement(
    loader: &PluginLoader,
    bytes: &[u8],
    config: &str,
) -> Arc<vnode_plugin_host::LoadedPlugin> {
    loader
        .load_blocking(&source(bytes), Some(PluginKind::Placement), config)
        .expect("loads")
}

pub fn is_accept(d: &Decision) -> bool {
    matches!(d, Decision::Accept(_))
}

/// Polls `cond` until true or `timeout`.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}
