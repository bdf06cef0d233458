//! `cargo xtask <task>`: the project's automation, in Rust rather than shell scripts.
//!
//! * `test` — the one test command (README, `.ci/run`): sets up what the suite needs on a
//!   fresh machine (Python venv for the official ECI SDK test), checks formatting, builds
//!   every binary once, then runs the whole suite with nextest.
//! * `lint` — `cargo fmt --check` and `cargo clippy --all-targets -D warnings` for the
//!   host workspace and the plugin workspace.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    let root = repo_root();
    std::env::set_current_dir(&root)?;
    match task.as_str() {
        "test" => test(&root),
        "lint" => lint(),
        "" | "help" | "--help" | "-h" => {
            println!("usage: cargo xtask <test|lint>");
            Ok(())
        }
        other => bail!("unknown task `{other}` (try `cargo xtask help`)"),
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ sits in the repository root")
        .to_path_buf()
}

fn test(root: &Path) -> Result<()> {
    let python = python_env(root)?;
    // A CI run builds from a clean clone exactly once: incremental compilation only costs
    // time there, and its caches (gigabytes for this workspace) have filled a CI disk before.
    // Developers keep their incremental builds; CI is recognised by the conventional `CI`
    // variable, and an explicit CARGO_INCREMENTAL always wins.
    let incremental_off = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
        && std::env::var_os("CARGO_INCREMENTAL").is_none();
    let cargo = || {
        let mut cmd = Command::new("cargo");
        if incremental_off {
            cmd.env("CARGO_INCREMENTAL", "0");
        }
        cmd
    };
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args([
        "fmt",
        "--all",
        "--check",
        "--manifest-path",
        "plugins/Cargo.toml",
    ]))?;
    // Build every binary (and, through vnode-plugin-host's build script, every plugin)
    // once; the end-to-end tests start the built `vnode` binary. `--tests` makes this build
    // resolve dependency features exactly as the test build below does (dev-dependencies
    // included), so no dependency is compiled twice with two feature sets.
    run(cargo().args(["build", "--workspace", "--bins", "--tests"]))?;
    // The plugins' decision logic, natively (fast; the Wasm builds are tested by the host).
    run(cargo()
        .args([
            "test",
            "--workspace",
            "--manifest-path",
            "plugins/Cargo.toml",
        ])
        .env("CARGO_TARGET_DIR", root.join("target/plugins")))?;
    let nextest = cargo()
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut cmd = cargo();
    if nextest {
        cmd.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    } else {
        eprintln!("xtask: cargo-nextest not found, falling back to `cargo test`");
        cmd.args(["test", "--workspace", "--no-fail-fast"]);
    }
    if let Some(python) = python {
        cmd.env("VNODE_TEST_PYTHON", python);
    }
    run(&mut cmd)
}

fn lint() -> Result<()> {
    run(Command::new("cargo").args(["fmt", "--all", "--check"]))?;
    run(Command::new("cargo").args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(Command::new("cargo").args([
        "clippy",
        "--manifest-path",
        "plugins/Cargo.toml",
        "--workspace",
        "--target",
        "wasm32-wasip2",
        "--",
        "-D",
        "warnings",
    ]))
}

/// A virtualenv in `target/pyenv` with `tests/python/requirements.txt` installed (the
/// official Alibaba Cloud ECI SDK, used to prove the emulator is wire-faithful, and
/// componentize-py, which builds the Python placement plugin example).
/// Re-installs only when the requirements file changes.
fn python_env(root: &Path) -> Result<Option<PathBuf>> {
    let reqs = root.join("tests/python/requirements.txt");
    if !reqs.exists() {
        return Ok(None);
    }
    let venv = root.join("target/pyenv");
    let python = venv.join("bin/python");
    let stamp = venv.join("requirements.stamp");
    let wanted = std::fs::read_to_string(&reqs)?;
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) && python.exists() {
        return Ok(Some(python));
    }
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&reqs))?;
    std::fs::write(&stamp, wanted)?;
    Ok(Some(python))
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}
