//! `examples/plugin-walkthrough.md` runs as written: every fenced `sh` block, in order, in
//! one `bash` (so `cd` and `export` carry over, as in a terminal), from the repository root.
//! Only environment the doc and the tools it runs read is set: `WALK` (a temp dir),
//! `CARGO_TARGET_DIR` (`target/plugins`, persistent and shared with `plugin_new`'s scaffolds, so
//! the scaffolded crate's dependencies are compiled once), `VNODE_PLUGIN_CACHE_DIR` (compiled plugins, so the Python component compiles
//! once), `VNODE_PLUGIN_CALL_TIMEOUT_MS` (see below) and `PATH` (componentize-py from the test
//! virtualenv). The sandbox uses port 0 everywhere.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use vnode_tests::repo_root;

const DOC: &str = "examples/plugin-walkthrough.md";

/// The doc's fenced `sh` blocks, in order.
fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// `target/pyenv/bin` (where `cargo xtask test` installs componentize-py).
fn venv_bin() -> PathBuf {
    let Some(python) = std::env::var_os("VNODE_TEST_PYTHON") else {
        panic!(
            "VNODE_TEST_PYTHON is not set: run the tests with `cargo xtask test` (it builds the \
             virtualenv target/pyenv with componentize-py, which the walk-through's Python \
             section uses, and sets VNODE_TEST_PYTHON)"
        );
    };
    let bin = PathBuf::from(python)
        .parent()
        .expect("VNODE_TEST_PYTHON is a file path")
        .to_path_buf();
    assert!(
        bin.join("componentize-py").exists(),
        "{} has no componentize-py: run `cargo xtask test` (it installs tests/python/requirements.txt)",
        bin.display()
    );
    bin
}

#[test]
fn the_doc_has_the_steps_it_promises() {
    let text = std::fs::read_to_string(repo_root().join(DOC)).expect("the walk-through exists");
    let script = sh_blocks(&text).join("\n");
    for step in [
        "vnode plugin new my-policy",
        "cargo build --release --target wasm32-wasip2",
        "vnode plugin check",
        "--pods examples/pods/mixed.yaml",
        "--against",
        "vnode dev",
        "--placement",
        "kubectl apply",
        "vnode\\.io/placement-plugin",
        "reason=Placed",
        "mv \"$WALK/plugins/placement.wasm.new\"",
        "componentize-py -d ../../../wit/v0.2.0 -w placement-plugin componentize app",
    ] {
        assert!(script.contains(step), "no `{step}` in the sh blocks");
    }
    // Portable to macOS: BSD sed takes `-i` with a suffix argument and has no `\n` in a
    // replacement, so the doc edits and derives files with perl (or a heredoc) instead.
    for line in script.lines().filter(|l| l.contains("sed ")) {
        assert!(
            !line.contains("sed -i") && !line.contains("\\n"),
            "GNU-only sed in the walk-through: {line}"
        );
    }
}

#[test]
fn the_walkthrough_runs_as_written() -> Result<()> {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join(DOC))?;
    let blocks = sh_blocks(&text);
    ensure!(blocks.len() >= 10, "only {} sh blocks", blocks.len());
    let mut script = String::from("set -euo pipefail\n");
    for (i, block) in blocks.iter().enumerate() {
        script.push_str(&format!("echo '### block {}' >&2\n{block}\n", i + 1));
    }

    let walk = tempfile::tempdir()?;
    let path = format!(
        "{}:{}",
        venv_bin().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out_file = walk.path().join("script.out");
    let err_file = walk.path().join("script.err");
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&root)
        .env("WALK", walk.path().join("walk"))
        // The target dir `plugin_new` builds its scaffolds in: the walk-through's scaffold
        // has the same dependencies, so CI compiles them once for both.
        .env("CARGO_TARGET_DIR", root.join("target/plugins"))
        .env(
            "VNODE_PLUGIN_CACHE_DIR",
            root.join("target/walkthrough/cwasm"),
        )
        // The deadline is wall-clock time: with the whole suite running at once, a Python
        // call (2–10 ms of CPU) can miss the default 50 ms. This run is about the doc.
        .env("VNODE_PLUGIN_CALL_TIMEOUT_MS", "1000")
        // The scaffolded crate's dependencies are in the local registry cache already.
        .env("CARGO_NET_OFFLINE", "true")
        .env("PATH", path)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_file)?)
        .stderr(std::fs::File::create(&err_file)?)
        // Its own process group, so the `vnode dev` it starts in the background is stopped
        // with it whatever happens.
        .process_group(0)
        .spawn()
        .context("starting bash")?;
    let pgid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20 * 60);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
    let read = |p: &PathBuf| -> Result<String> {
        let mut s = String::new();
        std::fs::File::open(p)?.read_to_string(&mut s)?;
        Ok(s)
    };
    let stdout = read(&out_file)?;
    let stderr = read(&err_file)?;
    let dev_log = read(&walk.path().join("walk/dev.log")).unwrap_or_default();
    let report = || {
        let tail = |s: &str| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(60)..].join("\n")
        };
        format!(
            "--- stdout\n{}\n--- stderr\n{}\n--- vnode dev log\n{}",
            tail(&stdout),
            tail(&stderr),
            tail(&dev_log)
        )
    };
    match status {
        None => bail!(
            "the walk-through did not finish in 20 minutes\n{}",
            report()
        ),
        Some(s) if !s.success() => bail!("the walk-through failed ({s})\n{}", report()),
        Some(_) => {}
    }

    // What the reader is told they will see.
    for expected in [
        // check
        "plugin:      my-policy 0.1.0",
        "decision:    p50",
        // simulate --against prints a summary of both
        "zone-spread",
        // the pods in the sandbox
        "my-policy@0.1.0 (sha256 ",
        "Placed",
        "PlacementRefused",
        "this node takes at most 4000m per pod",
        // the swap
        "placement my-policy@0.2.0",
        // the Python plugin
        "plugin:      team-placement 1.0.0",
        "the team may only use cn-hangzhou-h, cn-hangzhou-i",
    ] {
        ensure!(
            stdout.contains(expected),
            "no {expected:?} in\n{}",
            report()
        );
    }
    // nginx keeps the version that placed it, nginx-2 was placed by the new one.
    let table: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("POD "))
        .collect();
    let row = |pod: &str| {
        table
            .iter()
            .find(|l| l.split_whitespace().next() == Some(pod))
            .copied()
            .unwrap_or("")
    };
    ensure!(row("nginx").contains("my-policy@0.1.0"), "{}", report());
    ensure!(row("nginx-2").contains("my-policy@0.2.0"), "{}", report());
    Ok(())
}
