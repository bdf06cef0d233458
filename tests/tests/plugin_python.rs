//! The Python placement plugin (`examples/plugins/python-placement`): built with the
//! documented componentize-py command from the test virtualenv, it passes `vnode plugin
//! check`, decides as its README says under `vnode plugin simulate`, and runs in the daemon
//! (`vnode dev --placement`), where pods carry its name@version and its refusals become events.
//!
//! The built `.wasm` is cached under `target/python-plugin/<source hash>/`, and compiled
//! components under `target/python-plugin/cwasm/`, so reruns take seconds.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use vnode_tests::{apply_yaml, get_json, repo_root, run_vnode, start_dev, wait_for};

const EXAMPLE: &str = "examples/plugins/python-placement";
const WIT: &str = "wit/v0.2.0";

/// `componentize-py` from the virtualenv `cargo xtask test` builds (`VNODE_TEST_PYTHON`).
fn componentize_py() -> PathBuf {
    let Some(python) = std::env::var_os("VNODE_TEST_PYTHON") else {
        panic!(
            "VNODE_TEST_PYTHON is not set: run the tests with `cargo xtask test` (it builds the \
             virtualenv target/pyenv with componentize-py and sets VNODE_TEST_PYTHON), or set it \
             to target/pyenv/bin/python after running `cargo xtask test` once"
        );
    };
    let python = PathBuf::from(python);
    let bin = python
        .parent()
        .expect("VNODE_TEST_PYTHON is a file path")
        .join("componentize-py");
    assert!(
        bin.exists(),
        "{} is missing: VNODE_TEST_PYTHON ({}) points into a virtualenv without componentize-py; \
         run `cargo xtask test` (it installs tests/python/requirements.txt)",
        bin.display(),
        python.display()
    );
    bin
}

fn cache_root() -> PathBuf {
    repo_root().join("target/python-plugin")
}

/// The compiled-component cache shared by every `vnode plugin` call here.
fn cwasm_cache() -> String {
    cache_root().join("cwasm").to_string_lossy().into_owned()
}

/// A key over everything the component is built from: the app, the contract and the pinned
/// componentize-py version.
fn source_hash() -> Result<String> {
    let root = repo_root();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut files = vec![root.join(EXAMPLE).join("app.py")];
    let mut wit: Vec<PathBuf> = std::fs::read_dir(root.join(WIT))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    wit.sort();
    files.extend(wit);
    files.push(root.join("tests/python/requirements.txt"));
    for f in files {
        f.file_name().hash(&mut hasher);
        std::fs::read(&f)
            .with_context(|| format!("reading {}", f.display()))?
            .hash(&mut hasher);
    }
    Ok(format!("{:016x}", hasher.finish()))
}

/// Builds (or reuses) `team_placement.wasm` with the README's command, run in the example
/// directory. Concurrent test processes wait on a lock file instead of building twice.
fn plugin() -> Result<PathBuf> {
    let dir = cache_root().join(source_hash()?);
    let wasm = dir.join("team_placement.wasm");
    if wasm.exists() {
        return Ok(wasm);
    }
    std::fs::create_dir_all(&dir)?;
    let lock = dir.join("build.lock");
    let started = Instant::now();
    loop {
        match std::fs::File::create_new(&lock) {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if wasm.exists() {
                    return Ok(wasm);
                }
                // A build takes well under 5 minutes; an older lock was left by a killed run.
                let stale = std::fs::metadata(&lock)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > Duration::from_secs(300)));
                if stale || started.elapsed() > Duration::from_secs(600) {
                    let _ = std::fs::remove_file(&lock);
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e).context("creating the build lock"),
        }
    }
    let result = build(&dir, &wasm);
    let _ = std::fs::remove_file(&lock);
    result.map(|()| wasm)
}

fn build(dir: &Path, wasm: &Path) -> Result<()> {
    let partial = dir.join("team_placement.wasm.partial");
    // The README's command, verbatim except for the output path.
    let out = Command::new(componentize_py())
        .current_dir(repo_root().join(EXAMPLE))
        .args([
            "-d",
            "../../../wit/v0.2.0",
            "-w",
            "placement-plugin",
            "componentize",
            "app",
            "-o",
        ])
        .arg(&partial)
        .output()
        .context("running componentize-py")?;
    ensure!(
        out.status.success(),
        "componentize-py failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&partial, wasm)?;
    Ok(())
}

fn example(file: &str) -> String {
    repo_root()
        .join(EXAMPLE)
        .join(file)
        .to_string_lossy()
        .into_owned()
}

/// The call deadline for the CLI runs here. The deadline is wall-clock time (epoch ticks),
/// and with every test of the suite running at once on a small machine a Python call that
/// takes 2–10 ms of CPU has been seen to miss the default 50 ms; these tests are about
/// decisions, not about the machine's load.
const CALL_TIMEOUT_MS: &str = "1000";

/// `vnode ARGS… --call-timeout-ms CALL_TIMEOUT_MS`.
fn run_plugin_cli(args: &[&str]) -> Result<(i32, String, String)> {
    let mut all = args.to_vec();
    all.extend(["--call-timeout-ms", CALL_TIMEOUT_MS]);
    run_vnode(&all)
}

/// `vnode plugin check WASM --cache-dir <shared cache> EXTRA…` (with the call deadline).
fn check(wasm: &str, extra: &[&str]) -> Result<(i32, String, String)> {
    let cache = cwasm_cache();
    let mut args = vec!["plugin", "check", wasm, "--cache-dir", &cache];
    args.extend_from_slice(extra);
    run_plugin_cli(&args)
}

/// `vnode plugin simulate --plugin WASM --pods PODS --cache-dir <shared cache> --output json
/// EXTRA…`: its rows.
fn simulate(wasm: &str, pods: &str, extra: &[&str]) -> Result<Value> {
    let cache = cwasm_cache();
    let mut args = vec![
        "plugin",
        "simulate",
        "--plugin",
        wasm,
        "--pods",
        pods,
        "--cache-dir",
        &cache,
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    vnode_json(&args)
}

fn vnode_json(args: &[&str]) -> Result<Value> {
    let (code, out, err) = run_plugin_cli(args)?;
    ensure!(code == 0, "vnode {args:?} failed ({code}):\n{out}\n{err}");
    serde_json::from_str(&out).with_context(|| format!("vnode {args:?} printed:\n{out}"))
}

/// `simulate --output json` rows by pod name.
fn by_pod(rows: &Value) -> Result<std::collections::BTreeMap<String, Value>> {
    rows.as_array()
        .context("simulate prints an array")?
        .iter()
        .map(|r| Ok((r["pod"].as_str().context("pod")?.to_string(), r.clone())))
        .collect()
}

fn attempts(row: &Value) -> Result<&Vec<Value>> {
    row["decision"]["accept"]["attempts"]
        .as_array()
        .with_context(|| format!("not accepted: {row}"))
}

fn refusal(row: &Value) -> Result<&str> {
    row["decision"]["refuse"]
        .as_str()
        .with_context(|| format!("not refused: {row}"))
}

#[test]
fn python_plugin_passes_check_and_reports_its_cost() -> Result<()> {
    let wasm = plugin()?;
    let wasm = wasm.to_str().context("utf-8 path")?;
    let teams = example("teams.json");
    let (code, out, err) = check(
        wasm,
        &[
            "--kind",
            "placement",
            "--config-file",
            &teams,
            "--timings",
            "--output",
            "json",
        ],
    )?;
    ensure!(
        code == 0,
        "vnode plugin check failed ({code}):\n{out}\n{err}"
    );
    let info: Value =
        serde_json::from_str(&out).with_context(|| format!("check printed:\n{out}"))?;
    ensure!(info["name"] == "team-placement", "{info}");
    ensure!(info["version"] == "1.0.0", "{info}");
    ensure!(info["contract"] == "vnode:plugin@0.2.0", "{info}");
    ensure!(info["kind"] == "placement", "{info}");
    ensure!(info["smoke_test"] == "passed", "{info}");
    for what in ["instantiate", "call"] {
        let t = &info["timings"][what];
        ensure!(t["samples"] == 20, "{info}");
        let p50 = t["p50_ms"].as_f64().context("p50_ms")?;
        ensure!(p50 > 0.0, "{info}");
    }

    // A configuration its `init` refuses: non-zero exit, the plugin's reason shown.
    let (code, _, err) = check(
        wasm,
        &["--config", r#"{"teams": {"batch": {"spot": "sometimes"}}}"#],
    )?;
    ensure!(code != 0, "a bad configuration was accepted");
    ensure!(
        err.contains("teams.batch.spot must be one of"),
        "stderr: {err}"
    );
    let (code, _, err) = check(wasm, &["--config", "zones = a"])?;
    ensure!(code != 0 && err.contains("not JSON"), "stderr: {err}");

    // The default memory cap is not what keeps it running: its linear memory starts at
    // 12.5 MiB, so 16 MiB is enough and 8 MiB is refused with a clear error.
    let (code, out, err) = check(wasm, &["--memory-limit-mib", "16"])?;
    ensure!(code == 0, "{out}{err}");
    let (code, _, err) = check(wasm, &["--memory-limit-mib", "8"])?;
    ensure!(code != 0 && err.contains("memory"), "stderr: {err}");
    Ok(())
}

#[test]
fn python_plugin_decides_by_team_rules() -> Result<()> {
    let wasm = plugin()?;
    let wasm = wasm.to_str().context("utf-8 path")?;
    let teams = example("teams.json");
    let pods = example("pods.yaml");
    let simulate = |extra: &[&str]| {
        let mut args = vec!["--config-file", teams.as_str()];
        args.extend_from_slice(extra);
        simulate(wasm, &pods, &args).and_then(|rows| by_pod(&rows))
    };
    let rows = simulate(&[])?;
    ensure!(rows.len() == 5, "{rows:?}");

    // storefront: its two zones only, least used first, on-demand, tagged with the team.
    let checkout = attempts(&rows["web/checkout-0"])?;
    let zones: Vec<&str> = checkout.iter().filter_map(|a| a["zone"].as_str()).collect();
    ensure!(zones == ["cn-hangzhou-h", "cn-hangzhou-i"], "{checkout:?}");
    ensure!(
        checkout
            .iter()
            .all(|a| a["spot"] == "NoSpot" && a["extra_tags"]["team"] == "storefront"),
        "{checkout:?}"
    );
    // A vSwitch in a zone the team may not use.
    let why = refusal(&rows["web/checkout-pinned"])?;
    ensure!(
        why.contains("vsw-bp1j000000000000000c") && why.contains("cn-hangzhou-j"),
        "{why}"
    );
    // batch prefers spot: every zone × both specs on spot (1-hour protection), then the same
    // on demand.
    let etl = attempts(&rows["batch/nightly-etl"])?;
    ensure!(etl.len() == 12, "{etl:?}");
    ensure!(
        etl[0]["spot"] == "SpotAsPriceGo"
            && etl[0]["sizing"] == "2-4Gi"
            && etl[1]["sizing"] == "4-8Gi"
            && etl[0]["spot_duration_hours"] == 1,
        "{etl:?}"
    );
    ensure!(
        etl[6..].iter().all(|a| a["spot"] == "NoSpot"),
        "on-demand fallback last: {etl:?}"
    );
    // The per-pod ceiling from "*" and the GPU rule.
    let why = refusal(&rows["ci/huge-build"])?;
    ensure!(why.contains("16000m") && why.contains("8000m"), "{why}");
    let why = refusal(&rows["analytics/notebook"])?;
    ensure!(why.contains("GPU"), "{why}");

    // Spreading follows the host's per-zone counts.
    let rows = simulate(&["--usage", "cn-hangzhou-h=5", "--usage", "cn-hangzhou-i=1"])?;
    let first = &attempts(&rows["web/checkout-0"])?[0];
    ensure!(first["zone"] == "cn-hangzhou-i", "{first}");
    Ok(())
}

#[test]
fn python_plugin_simulates_every_example_pod() -> Result<()> {
    let wasm = plugin()?;
    let wasm = wasm.to_str().context("utf-8 path")?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("examples/pods"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    // Every file of bare pods (`job.yaml` holds a Job, which simulate refuses by design).
    files.retain(|f| {
        f.extension().is_some_and(|e| e == "yaml")
            && std::fs::read_to_string(f).is_ok_and(|t| !t.lines().any(|l| l == "kind: Job"))
    });
    files.sort();
    ensure!(files.len() >= 4, "{files:?}");
    for file in &files {
        let f = file.to_str().context("utf-8 path")?;
        let rows = simulate(wasm, f, &[])?;
        for row in rows.as_array().context("array")? {
            ensure!(row.get("error").is_none(), "{f}: {row}");
            ensure!(
                row["plugin"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("team-placement 1.0.0")),
                "{row}"
            );
        }
    }
    // mixed.yaml with the defaults: the three unpinned pods spread over three zones, the
    // GPU pod keeps its pinned vSwitch and its spot price limit.
    let mixed = repo_root().join("examples/pods/mixed.yaml");
    let rows = by_pod(&simulate(wasm, &mixed.to_string_lossy(), &[])?)?;
    let mut zones: Vec<String> = [
        "shop/web-7d4b9c6f5-x2x9k",
        "batch/report-28841-abcde",
        "db/postgres-0",
    ]
    .iter()
    .map(|p| {
        Ok(attempts(&rows[*p])?[0]["zone"]
            .as_str()
            .unwrap_or("")
            .to_string())
    })
    .collect::<Result<_>>()?;
    zones.sort();
    zones.dedup();
    ensure!(zones.len() == 3, "{zones:?}");
    let gpu = &attempts(&rows["ml/gpu-infer"])?[0];
    ensure!(
        gpu["vswitches"][0] == "vsw-bp1i000000000000000b"
            && gpu["spot"]["SpotWithPriceLimit"] == 1.2
            && gpu["sizing"] == "ecs.gn6i-c4g1.xlarge",
        "{gpu}"
    );
    Ok(())
}

#[test]
fn python_plugin_runs_in_the_daemon() -> Result<()> {
    let wasm = plugin()?;
    let cache = cwasm_cache();
    let dir = tempfile::tempdir()?;
    let sandbox = dir.path().join("sandbox");
    // Compile once into the shared cache and hand it to the sandbox's own cache directory
    // (`DIR/plugin-cache`), so the daemon deserializes instead of compiling ~18 MB again.
    let (code, out, err) = check(wasm.to_str().context("utf-8")?, &[])?;
    ensure!(code == 0, "{out}{err}");
    let dev_cache = sandbox.join("plugin-cache");
    std::fs::create_dir_all(&dev_cache)?;
    for entry in std::fs::read_dir(&cache)? {
        let entry = entry?;
        std::fs::copy(entry.path(), dev_cache.join(entry.file_name()))?;
    }
    let teams = example("teams.json");
    // The daemon reads the same deadline variable as the CLI (see CALL_TIMEOUT_MS).
    let proc = start_dev(
        &sandbox,
        &[
            "--placement",
            wasm.to_str().context("utf-8")?,
            "--placement-config-file",
            &teams,
        ],
        &[("VNODE_PLUGIN_CALL_TIMEOUT_MS", CALL_TIMEOUT_MS)],
        Duration::from_secs(60),
    )?;
    let kubeconfig = std::fs::canonicalize(sandbox.join("kubeconfig"))?;
    wait_for("the node", Duration::from_secs(90), || {
        let node = get_json(&kubeconfig, &["get", "node", "virtual-kubelet"])?;
        Ok(vnode_tests::node_is_ready(&node).then_some(()))
    })?;
    let pod = |name: &str, team: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{team: {team}}}\n\
             spec:\n  nodeSelector: {{type: virtual-kubelet}}\n  tolerations:\n  - {{operator: Exists}}\n  \
             containers:\n  - name: app\n    image: nginx:1.27\n"
        )
    };
    apply_yaml(
        &kubeconfig,
        dir.path(),
        "web.yaml",
        &pod("web", "storefront"),
    )?;
    apply_yaml(&kubeconfig, dir.path(), "api.yaml", &pod("api", "payments"))?;
    let web = wait_for("web placed", Duration::from_secs(60), || {
        let p = get_json(&kubeconfig, &["get", "pod", "web"])?;
        Ok(p["metadata"]["annotations"]["vnode.io/container-group-id"]
            .is_string()
            .then_some(p))
    })?;
    let ann = &web["metadata"]["annotations"];
    ensure!(
        ann["vnode.io/placement-plugin"]
            .as_str()
            .is_some_and(|p| p.starts_with("team-placement@1.0.0 ")),
        "{ann}"
    );
    // storefront may use zones h and i only (the sandbox has h, i and k).
    let zone = ann["vnode.io/zone"].as_str().unwrap_or("");
    ensure!(zone.ends_with("-h") || zone.ends_with("-i"), "{ann}");
    let refused = wait_for("api refused", Duration::from_secs(60), || {
        let events = get_json(&kubeconfig, &["get", "events"])?;
        Ok(events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["reason"] == "PlacementRefused" && e["involvedObject"]["name"] == "api")
            .cloned())
    })?;
    let message = refused["message"].as_str().unwrap_or("");
    ensure!(
        message.contains("team-placement@1.0.0") && message.contains("PCI cluster"),
        "{refused}"
    );
    let status = proc.terminate(Duration::from_secs(30))?;
    if !status.success() {
        bail!("vnode dev exited with {status:?}");
    }
    Ok(())
}
