//! End-to-end: `kubectl logs`, `kubectl logs -f` and `kubectl exec` through the real
//! processes — `vnode apiserver` (which proxies them to the node's kubelet endpoint over
//! mutual TLS, as kube-apiserver does), `vnode run` (whose kubelet API serves them from ECI)
//! and `vnode eci-emulator` (DescribeContainerLog, ExecContainerCommand's WebSocket).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use vnode_tests::{VnodeProcess, kubectl};

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

/// The API server under test mints no ServiceAccount tokens; do not ask for one.
const NO_TOKEN_SA: &str = "apiVersion: v1
kind: ServiceAccount
metadata:
  name: default
  namespace: default
automountServiceAccountToken: false
";

fn daemon_env(kubeconfig: &Path, eci_url: &str) -> Vec<(String, String)> {
    [
        ("KUBECONFIG", kubeconfig.to_string_lossy().to_string()),
        ("KUBELET_PORT", "10250".into()),
        ("VKUBELET_POD_IP", "127.0.0.1".into()),
        ("ECI_REGION", "cn-hangzhou".into()),
        ("ECI_VSWITCH", "cn-hangzhou-h=vsw-e2e-h".into()),
        ("ECI_SECURITY_GROUP", "sg-e2e".into()),
        (
            "ECI_ACCESS_KEY",
            vnode_eci_emulator::DEFAULT_ACCESS_KEY_ID.into(),
        ),
        (
            "ECI_SECRET_KEY",
            vnode_eci_emulator::DEFAULT_ACCESS_KEY_SECRET.into(),
        ),
        ("ECI_CLUSTER_NAME", "e2e-kubelet".into()),
        ("ECI_ENDPOINT", eci_url.into()),
        ("POD_NAME", "replica-a".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    while Instant::now() < deadline {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("timed out waiting for {what} (last error: {last:?})")
}

fn apply(kubeconfig: &Path, dir: &Path, name: &str, yaml: &str) -> Result<()> {
    let file = dir.join(name);
    std::fs::write(&file, yaml)?;
    let (code, _, err) = kubectl(kubeconfig, &["apply", "-f", &file.to_string_lossy()])?;
    ensure!(code == 0, "kubectl apply {name}: {err}");
    Ok(())
}

/// "line N" → N.
fn seq(line: &str) -> Result<u64> {
    line.strip_prefix("line ")
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("not a numbered line: {line:?}"))
}

#[test]
fn kubectl_logs_follow_and_exec_through_the_apiserver_and_eci() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let api_dir = dir.path().join("apiserver");
    let api_dir_s = api_dir.to_string_lossy().to_string();
    let _apiserver = VnodeProcess::start(
        &["apiserver", "--listen", "127.0.0.1:0", "--dir", &api_dir_s],
        Duration::from_secs(30),
    )?;
    let kubeconfig = api_dir.join("kubeconfig");
    let profile = dir.path().join("profile.yaml");
    std::fs::write(&profile, PROFILE)?;
    let profile_s = profile.to_string_lossy().to_string();
    let emulator = VnodeProcess::start(
        &[
            "eci-emulator",
            "--listen",
            "127.0.0.1:0",
            "--no-quotas",
            "--profile",
            &profile_s,
        ],
        Duration::from_secs(30),
    )?;

    // The kubelet API serves a certificate from the API server's CA (which verifies it) and
    // trusts that CA for the API server's kubelet client certificate.
    let pki = vnode_apiserver::Pki::load_or_create(&api_dir)?;
    let cert = pki.issue_server_cert("virtual-kubelet", &["127.0.0.1".into()])?;
    pki.write_pair("kubelet.crt", "kubelet.key", &cert)?;
    let config = dir.path().join("vnode.yaml");
    std::fs::write(
        &config,
        format!(
            "intervals: {{leaseRenew: 1s, nodeStatus: 3s}}\n\
             listen: {{kubelet: \"127.0.0.1:0\"}}\n\
             kubelet:\n  tlsCertFile: {}\n  tlsKeyFile: {}\n  clientCaFile: {}\n  authorization: alwaysAllow\n\
             leaderElection: {{enabled: false}}\n\
             shutdownGrace: 5s\n",
            api_dir.join("kubelet.crt").display(),
            api_dir.join("kubelet.key").display(),
            api_dir.join("ca.crt").display()
        ),
    )?;
    let env = daemon_env(&kubeconfig, &emulator.url);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let config_s = config.to_string_lossy().to_string();
    let _daemon = VnodeProcess::start_with_env(
        &[
            "run",
            "--provider",
            "alibabacloud",
            "--config",
            &config_s,
            "--listen",
            "127.0.0.1:0",
        ],
        &env,
        Duration::from_secs(60),
    )?;
    apply(&kubeconfig, dir.path(), "sa.yaml", NO_TOKEN_SA)?;
    wait_for("the node", Duration::from_secs(30), || {
        let (code, _, _) = kubectl(&kubeconfig, &["get", "node", "virtual-kubelet"])?;
        Ok((code == 0).then_some(()))
    })?;
    apply(&kubeconfig, dir.path(), "pod.yaml", POD)?;

    // kubectl logs: answers as soon as the group exists, with the container's lines.
    let first = wait_for("kubectl logs", Duration::from_secs(60), || {
        let (code, out, err) = kubectl(&kubeconfig, &["logs", "logger"])?;
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
    let (code, tail, err) = kubectl(&kubeconfig, &["logs", "logger", "--tail=1"])?;
    ensure!(code == 0 && tail.lines().count() == 1, "{tail}{err}");

    // kubectl logs -f: new lines keep coming, each exactly once (bounded by a timeout).
    let mut follow = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["logs", "-f", "logger", "--tail=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("kubectl logs -f")?;
    std::thread::sleep(Duration::from_secs(8));
    let _ = follow.kill();
    let out = follow.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
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
    let (code, out, err) = kubectl(&kubeconfig, &["exec", "logger", "--", "echo", "hi"])?;
    ensure!(code == 0, "kubectl exec: {err}");
    ensure!(out == "hi\n", "{out:?} {err}");
    let (code, _, err) = kubectl(&kubeconfig, &["exec", "logger", "--", "sh", "-c", "exit 3"])?;
    ensure!(code == 3, "exit code {code} {err}");
    Ok(())
}
