//! The official Python SDK (`alibabacloud-eci20180808`) against a `vnode eci-emulator`
//! process, with both signature schemes; plus the subcommand's CLI contract.
//!
//! `cargo xtask test` creates `target/pyenv` from `tests/python/requirements.txt` and passes
//! its interpreter as `VNODE_TEST_PYTHON`. Without it, this test creates the same virtualenv
//! itself (needs `python3` and access to PyPI) and fails with a clear message if it cannot.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use vnode_tests::{VnodeProcess, repo_root};

const AK: &str = "python-sdk-test-key";
const SK: &str = "python-sdk-test-secret";

/// The interpreter with the SDK installed.
fn python() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("VNODE_TEST_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let root = repo_root();
    let reqs = root.join("tests/python/requirements.txt");
    let venv = root.join("target/pyenv");
    let python = venv.join("bin/python");
    let stamp = venv.join("requirements.stamp");
    let wanted = std::fs::read_to_string(&reqs).context("reading tests/python/requirements.txt")?;
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) && python.exists() {
        return Ok(python);
    }
    // Same steps as `cargo xtask test`.
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .context("running python3 -m venv")?;
    if !ok.success() {
        bail!(
            "VNODE_TEST_PYTHON is unset and `python3 -m venv target/pyenv` failed; run `cargo xtask test`"
        );
    }
    let ok = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&reqs)
        .status()
        .context("running pip")?;
    if !ok.success() {
        bail!(
            "VNODE_TEST_PYTHON is unset and installing tests/python/requirements.txt failed; run `cargo xtask test`"
        );
    }
    std::fs::write(&stamp, wanted)?;
    Ok(python)
}

fn run_sdk(python: &PathBuf, endpoint: &str, scheme: &str) -> Result<serde_json::Value> {
    let script = repo_root().join("tests/python/eci_sdk_check.py");
    let out = Command::new(python)
        .arg(&script)
        .args([endpoint, AK, SK, scheme])
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .output()
        .context("running the Python SDK script")?;
    if !out.status.success() {
        bail!(
            "SDK script ({scheme}) failed: {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .last()
        .context("no output from the SDK script")?;
    serde_json::from_str(line).with_context(|| format!("SDK script printed {line:?}"))
}

#[test]
fn official_python_sdk_both_signature_schemes() -> Result<()> {
    let python = python()?;
    let emu = VnodeProcess::start(
        &[
            "eci-emulator",
            "--listen",
            "127.0.0.1:0",
            "--access-key-id",
            AK,
            "--access-key-secret",
            SK,
        ],
        Duration::from_secs(20),
    )?;
    assert!(emu.url.starts_with("http://127.0.0.1:"), "{}", emu.url);
    let endpoint = emu.url.trim_start_matches("http://").to_string();
    for scheme in ["v3", "v2"] {
        let r = run_sdk(&python, &endpoint, scheme)?;
        assert!(
            r["created"]
                .as_str()
                .is_some_and(|id| id.starts_with("eci-")),
            "{r}"
        );
        assert_eq!(r["described_status"], "Running", "{r}");
        assert_eq!(r["described_env"], "sdk test", "{r}");
        assert_eq!(r["described_cpu"], 0.5, "{r}");
        assert_eq!(r["status"], "Running", "{r}");
        assert_eq!(r["phase"], "Running", "{r}");
        assert_eq!(r["log_container"], "web", "{r}");
        assert!(r["log_lines"].as_u64().is_some_and(|n| n >= 2), "{r}");
        assert_eq!(r["error_code"], "MissingParameter", "{r}");
        assert_eq!(r["after_delete"], 0, "{r}");
    }
    let status = emu.terminate(Duration::from_secs(10))?;
    assert!(status.success(), "eci-emulator exited with {status}");
    Ok(())
}

#[test]
fn cli_state_file_and_bad_profile() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let profile = dir.path().join("profile.yaml");
    std::fs::write(&profile, "timing:\n  instant: true\nnot_a_field: 1\n")?;
    let (code, _, stderr) = vnode_tests::run_vnode(&[
        "eci-emulator",
        "--listen",
        "127.0.0.1:0",
        "--profile",
        profile.to_str().context("utf-8 path")?,
    ])?;
    assert_ne!(code, 0, "a bad profile is refused");
    assert!(stderr.contains("not_a_field"), "{stderr}");
    std::fs::write(&profile, "timing:\n  instant: true\n")?;
    let state = dir.path().join("state.json");
    let emu = VnodeProcess::start(
        &[
            "eci-emulator",
            "--listen",
            "127.0.0.1:0",
            "--profile",
            profile.to_str().context("utf-8 path")?,
            "--state",
            state.to_str().context("utf-8 path")?,
            "--no-quotas",
        ],
        Duration::from_secs(20),
    )?;
    assert!(emu.url.starts_with("http://127.0.0.1:"));
    let status = emu.terminate(Duration::from_secs(10))?;
    assert!(status.success());
    assert!(state.exists(), "state is written at shutdown");
    Ok(())
}
