//! End-to-end: `kubectl logs`, `kubectl logs -f` and `kubectl exec` through the real
//! processes — `vnode apiserver` (which proxies them to the node's kubelet endpoint over
//! mutual TLS, as kube-apiserver does), `vnode run` (whose kubelet API serves them from ECI)
//! and `vnode eci-emulator` (DescribeContainerLog, ExecContainerCommand's WebSocket).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use vnode_tests::{Sandbox, wait_for};

/// A container that logs a numbered line every 200 ms.
const PROFILE: &str = "workloads:
  - image: e2e/logger
    log_lines: [\"ready\"]
    log_every_ms: 200
    log_template: \"line {n}\"
";

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: logger
spec:
  containers:
  - image: e2e/logger
    name: app
  tolerations:
  - key: virtual-kubelet.io/provider
    operator: Exists
";

/// "line N" → N.
fn seq(line: &str) -> Result<u64> {
    line.strip_prefix("line ")
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("not a numbered line: {line:?}"))
}

#[test]
fn kubectl_logs_follow_and_exec_through_the_apiserver_and_eci() -> Result<()> {
    // The kubelet API serves a certificate from the API server's CA (which verifies it) and
    // trusts that CA for the API server's kubelet client certificate.
    let sb = Sandbox::builder()
        .cluster("e2e-kubelet")
        .emulator_profile(PROFILE)
        .env("ECI_VSWITCH", "cn-hangzhou-h=vsw-e2e-h")
        .kubelet_serving_cert()
        .start()?;
    let kubeconfig = sb.kubeconfig.clone();
    sb.apply("pod.yaml", POD)?;

    // kubectl logs: answers as soon as the group exists, with the container's lines.
    let first = wait_for("kubectl logs", Duration::from_secs(60), || {
        let (code, out, err) = sb.kubectl(&["logs", "logger"])?;
        if code != 0 {
            bail!("{err}");
        }
        Ok((out.lines().count() >= 3).then_some(out))
    })?;
    let lines: Vec<&str> = first.lines().collect();
    ensure!(lines[0] == "ready", "{first}");
    for (i, l) in lines[1..].iter().enumerate() {
        ensure!(seq(l)? == i as u64 + 1, "{first}");
    }
    let (code, tail, err) = sb.kubectl(&["logs", "logger", "--tail=1"])?;
    ensure!(code == 0 && tail.lines().count() == 1, "{tail}{err}");

    // kubectl logs -f: new lines keep coming, each exactly once. Read until ten have come
    // (a line every 200 ms; the minute is for a loaded machine), then stop following.
    let mut follow = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["logs", "-f", "logger", "--tail=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("kubectl logs -f")?;
    let stdout = follow.stdout.take().context("kubectl's stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while text.lines().count() < 10 {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            break;
        };
        text.push_str(&line);
        text.push('\n');
    }
    let _ = follow.kill();
    let out = follow.wait_with_output()?;
    let followed: Vec<u64> = text.lines().map(seq).collect::<Result<_>>()?;
    ensure!(
        followed.len() >= 10,
        "too few lines while following: {text:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for w in followed.windows(2) {
        ensure!(w[1] == w[0] + 1, "duplicate or missing line: {followed:?}");
    }

    // kubectl exec: the command runs in the container through ECI's exec stream.
    let (code, out, err) = sb.kubectl(&["exec", "logger", "--", "echo", "hi"])?;
    ensure!(code == 0, "kubectl exec: {err}");
    ensure!(out == "hi\n", "{out:?} {err}");
    let (code, _, err) = sb.kubectl(&["exec", "logger", "--", "sh", "-c", "exit 3"])?;
    ensure!(code == 3, "exit code {code} {err}");
    Ok(())
}
