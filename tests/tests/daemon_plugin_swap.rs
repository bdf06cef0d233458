//! End-to-end: the placement plugin is replaced on disk while the daemon places a 200-pod
//! burst (`vnode apiserver` + `vnode eci-emulator` + `vnode run`, the plugin configured from
//! a file path):
//!
//! * an atomic replacement with another valid component (the shipped `zone-spread` → the
//!   `contract-v0-1-0` fixture, a placement plugin built against the frozen 0.1.0 contract)
//!   takes over without failing a pod: every pod runs, pods placed before the swap carry the
//!   old `vnode.io/placement-plugin` annotation, pods created after it the new one;
//! * a broken replacement (bytes that are not Wasm, then a component of the wrong world) is
//!   refused, the node reports the refusal (`vnode.io/plugins` annotation and the
//!   `PluginsReady` condition's message), and pods keep being placed by the good version.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use vnode_tests::{Sandbox, nginx_pod_yaml, plugin_wasm, wait_for};

const CLUSTER: &str = "e2e-plugin-swap";

fn burst(sb: &Sandbox, file: &str, names: impl Iterator<Item = String>) -> Result<()> {
    let yaml: Vec<String> = names.map(|n| nginx_pod_yaml(&n)).collect();
    sb.apply(file, &yaml.join("---\n"))
}

/// Replaces `path` the way a deploy tool (or a ConfigMap mount) does: write a temporary file
/// in the same directory, then rename it over the old one.
fn replace_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("wasm.tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The node's `vnode.io/plugins` annotation (plugin health as JSON).
fn plugin_health(sb: &Sandbox) -> Result<Value> {
    let node = sb.get_json(&["get", "node", "virtual-kubelet"])?;
    let text = node["metadata"]["annotations"]["vnode.io/plugins"]
        .as_str()
        .context("no vnode.io/plugins annotation on the node")?;
    Ok(serde_json::from_str(text)?)
}

fn plugins_condition_message(sb: &Sandbox) -> Result<String> {
    let node = sb.get_json(&["get", "node", "virtual-kubelet"])?;
    Ok(node["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "PluginsReady"))
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_string())
}

/// Pod name → its `vnode.io/placement-plugin` annotation (pods not placed yet are absent).
fn placements(sb: &Sandbox) -> Result<BTreeMap<String, String>> {
    Ok(sb
        .pods()?
        .iter()
        .filter_map(|p| {
            let name = p["metadata"]["name"].as_str()?.to_string();
            let plugin = p["metadata"]["annotations"]["vnode.io/placement-plugin"].as_str()?;
            Some((name, plugin.to_string()))
        })
        .collect())
}

fn all_running(sb: &Sandbox, n: usize) -> Result<()> {
    wait_for("every pod Running", Duration::from_secs(90), || {
        let pods = sb.pods()?;
        let failed: Vec<&str> = pods
            .iter()
            .filter(|p| p["status"]["phase"] == "Failed")
            .filter_map(|p| p["metadata"]["name"].as_str())
            .collect();
        ensure!(failed.is_empty(), "pods failed: {failed:?}");
        let running = pods
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count();
        Ok((pods.len() == n && running == n).then_some(()))
    })
}

#[test]
fn replacing_the_placement_plugin_during_a_burst_fails_no_pod_and_a_broken_one_is_refused()
-> Result<()> {
    let plugin_dir = tempfile::tempdir()?;
    let placement = plugin_dir.path().join("placement.wasm");
    std::fs::copy(plugin_wasm("zone_spread"), &placement)?;
    let sb = Sandbox::builder()
        .cluster(CLUSTER)
        .emulator_profile("timing: {instant: true}\n")
        .config(&format!(
            "intervals: {{podStatusPoll: 300ms, podStatusResync: 3s}}\n\
             concurrency: {{podWorkers: 16}}\n\
             plugins: {{placement: {{path: {:?}}}}}\n",
            placement
        ))
        .start()?;
    let health = wait_for(
        "the node to report zone-spread",
        Duration::from_secs(30),
        || {
            let h = plugin_health(&sb)?;
            Ok((h["placement"]["name"] == "zone-spread").then_some(h))
        },
    )?;
    let old_hash = health["placement"]["hash"]
        .as_str()
        .unwrap_or("")
        .to_string();

    // The first half of the burst; swap once some of it is placed.
    burst(&sb, "burst-1.yaml", (0..100).map(|i| format!("a-{i:03}")))?;
    let before_swap = wait_for("part of the burst placed", Duration::from_secs(60), || {
        let p = placements(&sb)?;
        Ok((p.len() >= 20).then_some(p))
    })?;
    replace_atomically(&placement, &std::fs::read(plugin_wasm("contract_v0_1_0"))?)?;
    let health = wait_for(
        "the node to report the new plugin",
        Duration::from_secs(30),
        || {
            let h = plugin_health(&sb)?;
            Ok((h["placement"]["name"] == "contract-v0-1-0").then_some(h))
        },
    )?;
    let new_hash = health["placement"]["hash"]
        .as_str()
        .unwrap_or("")
        .to_string();
    ensure!(
        new_hash.len() == 12 && old_hash != new_hash,
        "a new version with a different hash: {health}"
    );
    // The second half, created after the swap.
    burst(&sb, "burst-2.yaml", (0..100).map(|i| format!("b-{i:03}")))?;
    all_running(&sb, 200)?;

    let after = placements(&sb)?;
    ensure!(
        after.len() == 200,
        "every pod is annotated: {}",
        after.len()
    );
    for (name, plugin) in &before_swap {
        ensure!(
            plugin.starts_with("zone-spread@") && after[name] == *plugin,
            "{name} was placed by zone-spread before the swap and keeps saying so: {plugin} → {}",
            after[name]
        );
    }
    for (name, plugin) in &after {
        ensure!(
            plugin.starts_with("zone-spread@") || plugin.starts_with("contract-v0-1-0@"),
            "{name}: {plugin}"
        );
        if name.starts_with("b-") {
            ensure!(
                plugin.starts_with("contract-v0-1-0@") && plugin.contains(&new_hash),
                "{name} was created after the swap but says {plugin} (new hash {new_hash})"
            );
        }
    }

    // Broken replacements: refused, reported on the node, the good version keeps placing.
    let mut n = 200;
    for (what, bytes) in [
        ("not-wasm", b"this is not a wasm component\n".to_vec()),
        (
            "wrong-world",
            std::fs::read(plugin_wasm("translator_default"))?,
        ),
    ] {
        let previous_refusal = plugin_health(&sb)?["lastRefusedReload"]["at"].clone();
        replace_atomically(&placement, &bytes)?;
        let health = wait_for(
            &format!("the node to report the refused {what} reload"),
            Duration::from_secs(30),
            || {
                let h = plugin_health(&sb)?;
                let r = &h["lastRefusedReload"];
                Ok((r.is_object() && r["at"] != previous_refusal).then_some(h))
            },
        )?;
        let refused = &health["lastRefusedReload"];
        ensure!(refused["slot"] == "placement", "{what}: {health}");
        ensure!(
            refused["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("placement.wasm")),
            "{what}: {health}"
        );
        ensure!(
            refused["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{what}: {health}"
        );
        ensure!(
            health["placement"]["name"] == "contract-v0-1-0"
                && health["placement"]["hash"] == new_hash,
            "{what}: the good version stays live: {health}"
        );
        let message = plugins_condition_message(&sb)?;
        ensure!(
            message.contains("last refused placement reload")
                && message.contains("contract-v0-1-0@"),
            "{what}: PluginsReady says {message:?}"
        );
        let names: Vec<String> = (0..10).map(|i| format!("{what}-{i}")).collect();
        burst(&sb, &format!("{what}.yaml"), names.iter().cloned())?;
        n += names.len();
        all_running(&sb, n)?;
        let now = placements(&sb)?;
        for name in &names {
            ensure!(
                now[name].starts_with("contract-v0-1-0@") && now[name].contains(&new_hash),
                "{name} placed by {} after the {what} replacement was refused",
                now[name]
            );
        }
    }
    Ok(())
}
