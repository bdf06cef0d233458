//! `vnode dev`: the API server, the ECI emulator and the daemon in one process. kubectl
//! sees the virtual node Ready; the seed's nginx pod gets a container group and runs; the
//! process stops cleanly on SIGTERM and releases its ports.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use vnode_tests::{kubectl, repo_root, start_dev, wait_for};

#[test]
fn dev_runs_the_whole_sandbox_and_stops_cleanly() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path().join("sandbox");
    let proc = start_dev(&d, &[], &[], Duration::from_secs(30))?;
    let api_addr = proc.url.trim_start_matches("https://").to_string();
    ensure!(proc.url.starts_with("https://127.0.0.1:"), "{}", proc.url);
    // The other services' ready lines and the hint follow the API server's line.
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !text.contains("try: ") && Instant::now() < deadline {
        if let Ok(line) = proc.stdout.recv_timeout(Duration::from_millis(200)) {
            text.push_str(&line);
            text.push('\n');
        }
    }
    let eci = text
        .lines()
        .find_map(|l| l.strip_prefix("eci-emulator listening on http://"))
        .context("no eci-emulator line")?
        .to_string();
    let metrics = text
        .lines()
        .find_map(|l| l.strip_prefix("vnode listening on http://"))
        .with_context(|| format!("no vnode daemon line in:\n{text}"))?
        .to_string();
    std::net::TcpStream::connect(&eci).with_context(|| format!("ECI emulator at {eci}"))?;
    let kubeconfig = std::fs::canonicalize(d.join("kubeconfig"))?;
    let hint = text
        .lines()
        .find(|l| l.starts_with("try: "))
        .context("no hint")?;
    ensure!(
        hint.contains(&format!(
            "KUBECONFIG={} kubectl get nodes",
            kubeconfig.display()
        )),
        "{hint}"
    );

    // The virtual node registers, Ready, with role agent.
    wait_for("node Ready", Duration::from_secs(30), || {
        let (code, out, _) = kubectl(&kubeconfig, &["get", "nodes"])?;
        Ok((code == 0
            && out.lines().any(|l| {
                l.starts_with("virtual-kubelet ") && l.contains(" Ready ") && l.contains("agent")
            }))
        .then_some(()))
    })?;

    // The seed's nginx pod gets a container group and runs.
    let nginx: PathBuf = repo_root().join("examples/pods/nginx.yaml");
    let (code, out, err) = kubectl(&kubeconfig, &["apply", "-f", &nginx.to_string_lossy()])?;
    ensure!(code == 0, "{out}{err}");
    let pod = |kc: &std::path::Path| -> Result<Value> {
        let (code, out, err) = kubectl(kc, &["get", "pod", "nginx", "-o", "json"])?;
        ensure!(code == 0, "{err}");
        Ok(serde_json::from_str(&out)?)
    };
    let group = wait_for(
        "a container group for nginx",
        Duration::from_secs(60),
        || {
            let p = pod(&kubeconfig)?;
            Ok(p["metadata"]["annotations"]["vnode.io/container-group-id"]
                .as_str()
                .map(str::to_string))
        },
    )?;
    ensure!(group.starts_with("eci-"), "{group}");
    wait_for("nginx Running", Duration::from_secs(60), || {
        Ok((pod(&kubeconfig)?["status"]["phase"] == "Running").then_some(()))
    })?;
    let (code, table, _) = kubectl(&kubeconfig, &["get", "pod", "nginx"])?;
    ensure!(
        code == 0 && table.contains("1/1") && table.contains("Running"),
        "{table}"
    );
    let (code, out, err) = kubectl(&kubeconfig, &["delete", "pod", "nginx", "--timeout=60s"])?;
    ensure!(code == 0, "{out}{err}");

    let status = proc.terminate(Duration::from_secs(20))?;
    ensure!(status.success(), "exit status {status:?}");
    // Every port is free again.
    for addr in [&api_addr, &eci, &metrics] {
        std::net::TcpListener::bind(addr.as_str())
            .with_context(|| format!("{addr} still in use after exit"))?;
    }
    Ok(())
}
