//! End-to-end shadow rollout through the real processes (`vnode apiserver`,
//! `vnode eci-emulator`, `vnode run`), with the daemon's config file mounted like a ConfigMap
//! (`..data` symlink swaps):
//!
//! 1. active `zone-spread`, shadow `zone-spread` with `spot-strategy = SpotAsPriceGo`: after
//!    N pods `/metrics` counts exactly the agreements and disagreements that
//!    `vnode plugin simulate --against` predicts for the same pods, every disagreement is
//!    logged with both decisions, and every group was created from the active decision;
//! 2. the shadow is replaced by another policy, `contract-v0-1-0` (first zone, on-demand, no
//!    fallbacks; a fixture built against the older contract), by a config change: counted
//!    under its name, again as `simulate` predicts;
//! 3. promotion (a config change): later pods carry `contract-v0-1-0@…`, the shadow stops;
//! 4. broken promotions (a missing file, a file that is not a component) are refused, shown
//!    on the node, and the promoted policy keeps serving. No pod fails along the way.
//!
//! (`cost-aware` is not the promoted policy here: as the active placement with
//! `translator-default` every pod fails, because it always adds a `vnode.io/capacity` tag and
//! the translator refuses `vnode.io/` tag keys.)
//!
//! (Comparing with `simulate` works because both sides of each comparison see the same
//! zone usage: the two zone-spread configurations always choose the same zones, so only the
//! spot strategy can differ.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use vnode_tests::{Sandbox, http_get, plugin_wasm, run_vnode, wait_for};

const SPOT_ANNOTATION: &str = "k8s.aliyun.com/eci-spot-strategy";

/// A pod bound to the virtual node (no scheduler in the sandbox); `spot` asks for
/// `SpotAsPriceGo` through the ECI annotation both zone-spread configurations honour.
fn pod_yaml(name: &str, spot: bool) -> String {
    let annotations = if spot {
        format!("  annotations:\n    {SPOT_ANNOTATION}: SpotAsPriceGo\n")
    } else {
        String::new()
    };
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: default
{annotations}spec:
  nodeName: virtual-kubelet
  restartPolicy: Never
  containers:
  - name: app
    image: nginx
    resources:
      requests: {{cpu: 250m, memory: 512Mi}}
  tolerations:
  - key: virtual-kubelet.io/provider
    operator: Exists
"
    )
}

/// The daemon's config directory, laid out like a ConfigMap volume: `vnode.yaml` →
/// `..data/vnode.yaml`, `..data` → `..<generation>`; an update swaps `..data` atomically.
struct ConfigMapDir {
    dir: PathBuf,
    base: serde_yaml::Value,
    generation: u32,
}

impl ConfigMapDir {
    fn create(dir: PathBuf, base: serde_yaml::Value, plugins: &str) -> Result<ConfigMapDir> {
        std::fs::create_dir_all(&dir)?;
        let mut cm = ConfigMapDir {
            dir,
            base,
            generation: 0,
        };
        cm.update(plugins)?;
        std::os::unix::fs::symlink("..data/vnode.yaml", cm.dir.join("vnode.yaml"))?;
        Ok(cm)
    }

    fn path(&self) -> PathBuf {
        self.dir.join("vnode.yaml")
    }

    /// Writes the base config with `plugins` (YAML of the `plugins` section) as the kubelet
    /// does a ConfigMap update.
    fn update(&mut self, plugins: &str) -> Result<()> {
        let mut config = self.base.clone();
        let plugins: serde_yaml::Value = serde_yaml::from_str(plugins)?;
        if let serde_yaml::Value::Mapping(m) = &mut config {
            m.insert("plugins".into(), plugins);
        }
        self.generation += 1;
        let data = format!("..2026_11_26_{:04}", self.generation);
        std::fs::create_dir(self.dir.join(&data))?;
        std::fs::write(
            self.dir.join(&data).join("vnode.yaml"),
            serde_yaml::to_string(&config)?,
        )?;
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&data, &tmp)?;
        std::fs::rename(&tmp, self.dir.join("..data"))?;
        Ok(())
    }
}

/// Sum of `vnode_plugin_shadow_decisions_total` samples with `result` (and `shadow` name
/// prefix, when given).
fn shadow_count(metrics: &str, shadow: &str, result: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("vnode_plugin_shadow_decisions_total{")
                && l.contains(&format!("shadow=\"{shadow}@"))
                && l.contains(&format!("result=\"{result}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn metrics(sb: &Sandbox) -> Result<String> {
    let (code, body) = http_get(&sb.daemon()?.url, "/metrics")?;
    if code != 200 {
        bail!("/metrics answered {code}");
    }
    Ok(body)
}

/// Creates the pods one after the other (so the shadow never saturates), each waited for
/// until its container group is recorded; returns the pods.
fn create_pods(sb: &Sandbox, pods: &[(String, bool)]) -> Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for (name, spot) in pods {
        sb.apply(&format!("{name}.yaml"), &pod_yaml(name, *spot))?;
        let pod = sb.wait_for_group(name, Duration::from_secs(60))?;
        out.push(pod);
    }
    Ok(out)
}

/// `vnode plugin simulate --against` on the same pods and node: (same, different).
fn simulate(
    dir: &Path,
    pods: &[(String, bool)],
    active: &Path,
    against: &Path,
    against_config: &str,
) -> Result<(u64, u64)> {
    let file = dir.join(format!("simulate-{}.yaml", pods[0].0));
    let docs: Vec<String> = pods.iter().map(|(n, s)| pod_yaml(n, *s)).collect();
    std::fs::write(&file, docs.join("---\n"))?;
    let args = [
        "plugin",
        "simulate",
        "--plugin",
        &active.to_string_lossy(),
        "--pods",
        &file.to_string_lossy(),
        "--against",
        &against.to_string_lossy(),
        "--against-config",
        against_config,
        "--region",
        "cn-hangzhou",
        "--vswitch",
        "cn-hangzhou-h=vsw-e2e-h",
        "--vswitch",
        "cn-hangzhou-i=vsw-e2e-i",
        "--node-name",
        "virtual-kubelet",
        "--cluster-name",
        "e2e",
        "--output",
        "json",
    ]
    .map(str::to_string);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = run_vnode(&args)?;
    if code != 0 {
        bail!("vnode plugin simulate failed ({code}): {err}");
    }
    let json: serde_json::Value = serde_json::from_str(&out).context("simulate --output json")?;
    Ok((
        json["same"].as_u64().context("same")?,
        json["different"].as_u64().context("different")?,
    ))
}

fn node_plugins(sb: &Sandbox) -> Result<serde_json::Value> {
    let node = sb.get_json(&["get", "node", "virtual-kubelet"])?;
    let ann = node["metadata"]["annotations"]["vnode.io/plugins"]
        .as_str()
        .context("vnode.io/plugins annotation")?;
    Ok(serde_json::from_str(ann)?)
}

fn placement_annotation(pod: &serde_json::Value) -> String {
    pod["metadata"]["annotations"]["vnode.io/placement-plugin"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn shadow_counts_match_the_simulation_and_promotion_is_a_config_change() -> Result<()> {
    let mut sb = Sandbox::builder()
        .without_daemon()
        .capture_daemon_logs()
        .env("VNODE_LOG_FORMAT", "json")
        .start()?;
    let plugins = sb.dir.path().join("plugins");
    std::fs::create_dir(&plugins)?;
    let zone_spread = plugins.join("zone-spread.wasm");
    let candidate = plugins.join("candidate.wasm");
    let junk = plugins.join("junk.wasm");
    std::fs::copy(plugin_wasm("zone_spread"), &zone_spread)?;
    std::fs::copy(plugin_wasm("contract_v0_1_0"), &candidate)?;
    std::fs::write(&junk, "this is not a WebAssembly component")?;

    // The sandbox's config (kubelet CA, intervals, …) plus a plugins section, mounted like a
    // ConfigMap.
    let base: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&sb.config_path)?)?;
    let spot_config = "spot-strategy = SpotAsPriceGo";
    let mut cm = ConfigMapDir::create(
        sb.dir.path().join("config"),
        base,
        &format!(
            "placement:\n  path: {zs}\n  shadow:\n    path: {zs}\n    config: \"{spot_config}\"\n",
            zs = zone_spread.display()
        ),
    )?;
    sb.config_path = cm.path();
    sb.restart_daemon()?;
    sb.wait_node_ready()?;
    let health = wait_for("the shadow on the node", Duration::from_secs(30), || {
        let h = node_plugins(&sb)?;
        Ok(h["placementShadow"]["name"]
            .as_str()
            .is_some_and(|n| n == "zone-spread")
            .then_some(h))
    })?;
    assert_eq!(health["placement"]["name"], "zone-spread", "{health}");

    // --- 1. shadow zone-spread (spot) next to zone-spread (on-demand) ---
    let phase1: Vec<(String, bool)> = (0..6).map(|i| (format!("one-{i}"), i % 2 == 0)).collect();
    let created = create_pods(&sb, &phase1)?;
    let (same, different) = simulate(
        sb.dir.path(),
        &phase1,
        &zone_spread,
        &zone_spread,
        spot_config,
    )?;
    assert_eq!((same, different), (3, 3), "the pods are built to split");
    let m = wait_for("six shadow comparisons", Duration::from_secs(30), || {
        let m = metrics(&sb)?;
        let n =
            shadow_count(&m, "zone-spread", "agree") + shadow_count(&m, "zone-spread", "disagree");
        Ok((n >= 6).then_some(m))
    })?;
    assert_eq!(shadow_count(&m, "zone-spread", "agree"), same, "{m}");
    assert_eq!(
        shadow_count(&m, "zone-spread", "disagree"),
        different,
        "{m}"
    );
    assert_eq!(shadow_count(&m, "zone-spread", "dropped"), 0, "{m}");
    assert_eq!(shadow_count(&m, "zone-spread", "shadow_error"), 0, "{m}");
    assert!(
        m.contains("vnode_plugin_shadow_decisions_total{active=\"zone-spread@"),
        "{m}"
    );
    // Only the active policy acted: every pod says zone-spread, and the pods without the
    // spot annotation run on-demand although the shadow would have bought spot.
    for pod in &created {
        assert!(
            placement_annotation(pod).starts_with("zone-spread@"),
            "{pod}"
        );
    }
    let groups = sb.live_groups()?;
    assert_eq!(groups.len(), 6, "{groups:?}");
    for (name, spot) in &phase1 {
        let group = groups
            .iter()
            .find(|g| vnode_tests::group_tag(g, "vnode.io/pod-name") == Some(name.as_str()))
            .with_context(|| format!("group of {name}"))?;
        let strategy = format!("{:?}", group.spot_strategy);
        assert_eq!(
            strategy.contains("AsPriceGo"),
            *spot,
            "{name}: spot strategy {strategy}"
        );
    }
    // Every disagreement is logged (JSON logs) with both decisions in full.
    let logs = sb.daemon_logs()?;
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == "shadow placement disagrees")
        .collect();
    assert_eq!(lines.len() as u64, different, "{logs}");
    for (name, spot) in &phase1 {
        let logged = lines.iter().any(|l| l["pod"] == format!("default/{name}"));
        assert_eq!(logged, !spot, "{name} in {lines:#?}");
    }
    for line in &lines {
        assert!(
            line["active"]
                .as_str()
                .is_some_and(|a| a.starts_with("zone-spread@"))
                && line["shadow"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("zone-spread@")),
            "{line}"
        );
        assert!(
            line["differs"]
                .as_str()
                .is_some_and(|d| d.starts_with("spot")),
            "{line}"
        );
        let decision = |key: &str| -> Result<serde_json::Value> {
            let text = line[key]
                .as_str()
                .with_context(|| format!("{key} in {line}"))?;
            Ok(serde_json::from_str(text)?)
        };
        let (active, shadow) = (decision("active_decision")?, decision("shadow_decision")?);
        let spots = |d: &serde_json::Value| -> Vec<String> {
            d["Accept"]["attempts"]
                .as_array()
                .map(|a| a.iter().map(|x| x["spot"].to_string()).collect())
                .unwrap_or_default()
        };
        assert!(
            !spots(&active).is_empty() && spots(&active).iter().all(|s| s.contains("OnDemand")),
            "{active}"
        );
        assert!(
            !spots(&shadow).is_empty()
                && spots(&shadow).iter().all(|s| s.contains("SpotAsPriceGo")),
            "{shadow}"
        );
    }

    // --- 2. the candidate is replaced by another policy (a config change) ---
    cm.update(&format!(
        "placement:\n  path: {}\n  shadow:\n    path: {}\n",
        zone_spread.display(),
        candidate.display()
    ))?;
    wait_for(
        "the new candidate shadowing",
        Duration::from_secs(30),
        || Ok((node_plugins(&sb)?["placementShadow"]["name"] == "contract-v0-1-0").then_some(())),
    )?;
    let phase2: Vec<(String, bool)> = (0..2).map(|i| (format!("two-{i}"), i == 0)).collect();
    create_pods(&sb, &phase2)?;
    let (same2, different2) = simulate(sb.dir.path(), &phase2, &zone_spread, &candidate, "")?;
    assert_eq!(
        (same2, different2),
        (0, 2),
        "zone-spread always offers a fallback zone, the candidate never"
    );
    let m = wait_for(
        "two comparisons of the new candidate",
        Duration::from_secs(30),
        || {
            let m = metrics(&sb)?;
            let n = shadow_count(&m, "contract-v0-1-0", "agree")
                + shadow_count(&m, "contract-v0-1-0", "disagree");
            Ok((n >= 2).then_some(m))
        },
    )?;
    assert_eq!(shadow_count(&m, "contract-v0-1-0", "agree"), same2, "{m}");
    assert_eq!(
        shadow_count(&m, "contract-v0-1-0", "disagree"),
        different2,
        "{m}"
    );
    assert_eq!(
        shadow_count(&m, "zone-spread", "agree") + shadow_count(&m, "zone-spread", "disagree"),
        6,
        "the replaced shadow no longer runs: {m}"
    );

    // --- 3. promotion: the candidate becomes the active placement, the shadow stops ---
    cm.update(&format!("placement:\n  path: {}\n", candidate.display()))?;
    wait_for(
        "the candidate active on the node",
        Duration::from_secs(30),
        || {
            let h = node_plugins(&sb)?;
            Ok(
                (h["placement"]["name"] == "contract-v0-1-0" && h["placementShadow"].is_null())
                    .then_some(()),
            )
        },
    )?;
    let phase3: Vec<(String, bool)> = (0..2).map(|i| (format!("three-{i}"), false)).collect();
    for pod in create_pods(&sb, &phase3)? {
        assert!(
            placement_annotation(&pod).starts_with("contract-v0-1-0@"),
            "{pod}"
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    let m = metrics(&sb)?;
    assert_eq!(
        shadow_count(&m, "contract-v0-1-0", "agree")
            + shadow_count(&m, "contract-v0-1-0", "disagree"),
        same2 + different2,
        "no shadow after promotion: {m}"
    );

    // --- 4. broken promotions are refused; the promoted policy keeps serving ---
    for (bad, why) in [
        (plugins.join("missing.wasm"), "missing.wasm"),
        (junk.clone(), "junk.wasm"),
    ] {
        cm.update(&format!("placement:\n  path: {}\n", bad.display()))?;
        let h = wait_for(
            &format!("the refusal of {why} on the node"),
            Duration::from_secs(30),
            || {
                let h = node_plugins(&sb)?;
                let refused = &h["lastRefusedReload"];
                let shown = refused["path"].as_str().unwrap_or("").contains(why)
                    || refused["reason"].as_str().unwrap_or("").contains(why);
                Ok(shown.then_some(h))
            },
        )?;
        assert_eq!(h["placement"]["name"], "contract-v0-1-0", "{h}");
    }
    let phase4 = vec![("four-0".to_string(), false)];
    for pod in create_pods(&sb, &phase4)? {
        assert!(
            placement_annotation(&pod).starts_with("contract-v0-1-0@"),
            "{pod}"
        );
    }
    let m = metrics(&sb)?;
    assert!(
        m.contains("vnode_plugin_config_reloads_total{result=\"refused\"}"),
        "{m}"
    );

    // No pod failed, and the daemon is still the one we started.
    for pod in sb.pods()? {
        assert_ne!(pod["status"]["phase"], "Failed", "{pod}");
    }
    assert_eq!(sb.live_groups()?.len(), 11);
    Ok(())
}
