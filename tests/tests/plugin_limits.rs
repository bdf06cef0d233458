//! End-to-end per-plugin limits (`vnode apiserver` + `vnode eci-emulator` + `vnode run`):
//! the placement plugin (the `hostile` fixture, which misbehaves on a pod annotation) runs
//! under its own `callTimeoutMs`/`memoryLimitMib` from the daemon's config file, the
//! translator under its own (larger) ones, and:
//!
//! 1. a pod that makes the placement loop fails its placement with the plugin's own deadline
//!    (not the engine's 50 ms default), a pod that makes it hog memory with the plugin's own
//!    memory limit, while ordinary pods are placed and translated as usual;
//! 2. an out-of-range limit in a live config change is refused (shown on the node, naming
//!    the key) and the running placement keeps its limits;
//! 3. a valid new deadline applies live to the next decisions.
//!
//! The deadlines here are generous (hundreds of ms) on purpose: the loader's smoke decision
//! runs under them too, and a loaded CI machine must not fail that. The assertions are on
//! which limit stopped the call (the error names it), never on how fast anything ran.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use vnode_tests::{Sandbox, nginx_pod_yaml, plugin_wasm, pod_yaml, wait_for};

const BEHAVIOUR: &str = "hostile.vnode.io/behaviour";

/// A pod bound to the virtual node that asks the hostile fixture to `behaviour`.
fn hostile_pod(name: &str, behaviour: &str) -> String {
    pod_yaml(
        name,
        &format!("  annotations:\n    {BEHAVIOUR}: {behaviour}\n"),
        "  nodeName: virtual-kubelet\n  restartPolicy: Never\n",
        "  - name: app\n    image: nginx\n",
    )
}

/// Writes the daemon's config: the sandbox's base config plus `plugins` (YAML), replaced
/// atomically (write a temporary file, rename it over the old one) as an editor does.
fn write_config(base: &serde_yaml::Value, path: &Path, plugins: &str) -> Result<()> {
    let mut config = base.clone();
    let plugins: serde_yaml::Value = serde_yaml::from_str(plugins)?;
    if let serde_yaml::Value::Mapping(m) = &mut config {
        m.insert("plugins".into(), plugins);
    }
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, serde_yaml::to_string(&config)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The message of the `PlacementPluginFailed` event of pod `name`, once there is one.
fn placement_failure(sb: &Sandbox, name: &str) -> Result<String> {
    wait_for(
        &format!("a PlacementPluginFailed event for {name}"),
        Duration::from_secs(60),
        || {
            Ok(sb.events()?.iter().find_map(|e| {
                (e["involvedObject"]["name"] == name && e["reason"] == "PlacementPluginFailed")
                    .then(|| e["message"].as_str().unwrap_or_default().to_string())
            }))
        },
    )
}

/// Waits until pod `name` has its container group.
fn wait_placed(sb: &Sandbox, name: &str) -> Result<()> {
    sb.wait_for_group(name, Duration::from_secs(60)).map(drop)
}

/// Deletes a pod whose placement keeps failing, so its retries stop burning CPU.
fn delete_pod(sb: &Sandbox, name: &str) -> Result<()> {
    sb.kubectl_ok(&["delete", "pod", name, "--wait=false"])?;
    Ok(())
}

fn node_plugins(sb: &Sandbox) -> Result<serde_json::Value> {
    let node = sb.get_json(&["get", "node", "virtual-kubelet"])?;
    let text = node["metadata"]["annotations"]["vnode.io/plugins"]
        .as_str()
        .context("vnode.io/plugins annotation")?;
    Ok(serde_json::from_str(text)?)
}

#[test]
fn each_plugin_runs_under_its_own_limits_and_they_reload_live() -> Result<()> {
    let mut sb = Sandbox::builder()
        .without_daemon()
        .env_remove("VNODE_PLUGIN_CALL_TIMEOUT_MS")
        .start()?;
    let dir = sb.dir.path().join("plugins");
    std::fs::create_dir(&dir)?;
    let hostile = dir.join("hostile.wasm");
    let translator = dir.join("translator.wasm");
    std::fs::copy(plugin_wasm("hostile"), &hostile)?;
    std::fs::copy(plugin_wasm("translator_default"), &translator)?;
    let base: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&sb.config_path)?)?;
    let config_path = sb.dir.path().join("vnode-limits.yaml");
    let plugins = |placement_timeout: &str| {
        format!(
            "placement:\n  path: {}\n  callTimeoutMs: {placement_timeout}\n  memoryLimitMib: 24\n\
             translator:\n  path: {}\n  callTimeoutMs: 5000\n  memoryLimitMib: 128\n",
            hostile.display(),
            translator.display()
        )
    };
    write_config(&base, &config_path, &plugins("400"))?;
    sb.config_path = config_path.clone();
    sb.restart_daemon()?;
    sb.wait_node_ready()?;

    // --- 1. each plugin under its own limits ---
    sb.apply("steady-0.yaml", &nginx_pod_yaml("steady-0"))?;
    wait_placed(&sb, "steady-0")?;

    sb.apply("spin-0.yaml", &hostile_pod("spin-0", "loop"))?;
    let message = placement_failure(&sb, "spin-0")?;
    assert!(
        message.contains("ran longer than its 400 ms deadline"),
        "the placement's own deadline, not the engine's 50 ms: {message}"
    );
    delete_pod(&sb, "spin-0")?;

    sb.apply("hog-0.yaml", &hostile_pod("hog-0", "hog"))?;
    let message = placement_failure(&sb, "hog-0")?;
    assert!(
        message.contains(&format!("its {}-byte memory limit", 24u64 << 20)),
        "the placement's own memory limit: {message}"
    );
    delete_pod(&sb, "hog-0")?;

    // The same plugin still places ordinary pods, and the translator (under its own limits)
    // still translates them.
    sb.apply("steady-1.yaml", &nginx_pod_yaml("steady-1"))?;
    wait_placed(&sb, "steady-1")?;

    // --- 2. an out-of-range limit is refused; the running limits stay ---
    write_config(&base, &config_path, &plugins("0"))?;
    let health = wait_for(
        "the refused limit on the node",
        Duration::from_secs(30),
        || {
            let h = node_plugins(&sb)?;
            let reason = h["lastRefusedReload"]["reason"].as_str().unwrap_or("");
            Ok(reason
                .contains("plugins.placement.callTimeoutMs")
                .then_some(h))
        },
    )?;
    assert_eq!(health["placement"]["name"], "hostile", "{health}");
    sb.apply("spin-1.yaml", &hostile_pod("spin-1", "loop"))?;
    let message = placement_failure(&sb, "spin-1")?;
    assert!(
        message.contains("its 400 ms deadline"),
        "still the old deadline: {message}"
    );
    delete_pod(&sb, "spin-1")?;

    // --- 3. a valid new deadline applies to the next decisions ---
    write_config(&base, &config_path, &plugins("250"))?;
    let mut attempt = 0;
    let message = wait_for(
        "a loop pod stopped at the new 250 ms deadline",
        Duration::from_secs(60),
        || {
            // Until the reload is applied a new pod may still meet the old deadline: try
            // with a fresh pod each round.
            attempt += 1;
            let name = format!("spin-new-{attempt}");
            sb.apply(&format!("{name}.yaml"), &hostile_pod(&name, "loop"))?;
            let message = placement_failure(&sb, &name)?;
            delete_pod(&sb, &name)?;
            Ok(message.contains("its 250 ms deadline").then_some(message))
        },
    )?;
    assert!(message.contains("plugin hostile "), "{message}");
    sb.apply("steady-2.yaml", &nginx_pod_yaml("steady-2"))?;
    wait_placed(&sb, "steady-2")?;
    Ok(())
}
