//! Shared helpers for the end-to-end tests in `tests/tests/`: find the built `vnode`
//! binary, start its subcommands as real child processes on loopback, and clean up.
//!
//! Convention every long-running `vnode` subcommand follows (and these helpers rely on):
//! once it accepts connections it prints one line to stdout of the form
//! `<service> listening on <url>`, where `<url>` is the bound address. Tests pass
//! `--listen 127.0.0.1:0` so the kernel picks a free port: no races between parallel tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Path of the `vnode` binary built in this workspace's target directory.
///
/// `cargo xtask test` builds it before running the tests. Test binaries live in
/// `target/<profile>/deps/`, so the binary is two levels up.
pub fn vnode_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("VNODE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary has a path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let bin = profile_dir.join("vnode");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p vnode`; `cargo xtask test` does this)",
        bin.display()
    );
    bin
}

/// A running `vnode` child process. Killed (and reaped) when dropped, so a failing
/// test never leaves a stray server behind.
pub struct VnodeProcess {
    child: Child,
    /// The URL the process announced in its `listening on` line.
    pub url: String,
    /// Lines of stdout after the ready line, for tests that need later output.
    pub stdout: mpsc::Receiver<String>,
}

impl VnodeProcess {
    /// Starts `vnode ARGS…` and waits (up to `timeout`) for its `listening on` line.
    pub fn start(args: &[&str], timeout: Duration) -> Result<Self> {
        Self::start_with_env(args, &[], timeout)
    }

    /// Like [`VnodeProcess::start`], with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Result<Self> {
        let mut cmd = Command::new(vnode_bin());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning vnode {args:?}"))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some((_, url)) = line.rsplit_once(" listening on ") {
                        let url = url.trim().to_string();
                        return Ok(Self {
                            child,
                            url,
                            stdout: rx,
                        });
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    bail!(
                        "vnode {args:?} did not report `listening on` within {timeout:?} (exit: {status:?})"
                    );
                }
            }
        }
    }

    /// The OS process id, for tests that signal the process (e.g. `kill -9`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status.
    pub fn terminate(mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if std::time::Instant::now() > deadline {
                bail!("vnode did not exit within {timeout:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for VnodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `vnode ARGS…` to completion and returns (exit code, stdout, stderr).
pub fn run_vnode(args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(vnode_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running vnode {args:?}"))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Runs the real `kubectl` with the given kubeconfig; returns (exit code, stdout, stderr).
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running kubectl (is it installed?)")?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The repository root (for reading `examples/` and fixtures).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
        .to_path_buf()
}
