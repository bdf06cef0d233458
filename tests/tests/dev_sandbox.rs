//! `vnode dev`: starts the API server and the ECI emulator, writes a kubeconfig kubectl can use, tells the user what to run,
//! and stops cleanly on SIGTERM, releasing its port.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use vnode_tests::{VnodeProcess, kubectl};

#[test]
fn dev_serves_kubectl_and_stops_cleanly() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path().join("sandbox");
    let ds = d.to_str().context("utf-8")?;
    let proc = VnodeProcess::start(
        &[
            "dev",
            "--dir",
            ds,
            "--apiserver-listen",
            "127.0.0.1:0",
            "--eci-listen",
            "127.0.0.1:0",
        ],
        Duration::from_secs(30),
    )?;
    let addr = proc.url.trim_start_matches("https://").to_string();
    // The instructions follow the ready line.
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !text.contains("kubectl get nodes") && Instant::now() < deadline {
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
    std::net::TcpStream::connect(&eci).with_context(|| format!("ECI emulator at {eci}"))?;
    let kubeconfig = std::fs::canonicalize(d.join("kubeconfig"))?;
    ensure!(
        text.contains(&format!("export KUBECONFIG={}", kubeconfig.display())),
        "{text}"
    );
    let (code, out, err) = kubectl(&kubeconfig, &["get", "namespaces"])?;
    ensure!(code == 0 && out.contains("default"), "{out}{err}");

    let status = proc.terminate(Duration::from_secs(10))?;
    ensure!(status.success(), "exit status {status:?}");
    // The port is free again.
    std::net::TcpListener::bind(&addr)
        .with_context(|| format!("{addr} still in use after exit"))?;
    std::net::TcpListener::bind(&eci).with_context(|| format!("{eci} still in use after exit"))?;
    Ok(())
}
