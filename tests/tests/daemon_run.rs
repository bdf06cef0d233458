//! End-to-end: `vnode run` against `vnode apiserver`, configured through the seed manifest's
//! environment variables, checked with the real `kubectl`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use vnode_tests::{VnodeProcess, kubectl, run_vnode, vnode_bin};

/// The seed manifest's environment (ECI values are never dialled by these tests).
fn seed_env(kubeconfig: &Path) -> Vec<(String, String)> {
    [
        ("KUBECONFIG", kubeconfig.to_string_lossy().to_string()),
        ("KUBELET_PORT", "10250".into()),
        ("VKUBELET_POD_IP", "127.0.0.1".into()),
        ("VKUBELET_TAINT_KEY", "virtual-kubelet.io/provider".into()),
        ("VKUBELET_TAINT_VALUE", "alibabacloud".into()),
        ("VKUBELET_TAINT_EFFECT", "NoSchedule".into()),
        ("ECI_REGION", "cn-hangzhou".into()),
        ("ECI_VSWITCH", "vsw-test-a,vsw-test-b".into()),
        ("ECI_SECURITY_GROUP", "sg-test".into()),
        ("ECI_ACCESS_KEY", "AKIDTEST".into()),
        ("ECI_SECRET_KEY", "never-printed-secret".into()),
        ("ECI_ENDPOINT", "http://127.0.0.1:9".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn write_config(dir: &Path, apiserver_dir: &Path) -> Result<std::path::PathBuf> {
    let path = dir.join("vnode.yaml");
    std::fs::write(
        &path,
        format!(
            "intervals: {{leaseRenew: 1s, nodeStatus: 3s}}\n\
             listen: {{kubelet: \"127.0.0.1:0\"}}\n\
             kubelet:\n  clientCaFile: {}\n  authorization: alwaysAllow\n\
             leaderElection: {{namespace: default, leaseDuration: 4s, retryPeriod: 1s}}\n\
             shutdownGrace: 5s\n",
            apiserver_dir.join("ca.crt").display()
        ),
    )?;
    Ok(path)
}

fn start_apiserver(dir: &Path) -> Result<VnodeProcess> {
    let dir = dir.to_string_lossy().to_string();
    VnodeProcess::start(
        &["apiserver", "--listen", "127.0.0.1:0", "--dir", &dir],
        Duration::from_secs(30),
    )
}

fn start_daemon(config: &Path, env: &[(String, String)], identity: &str) -> Result<VnodeProcess> {
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("POD_NAME", identity));
    let config = config.to_string_lossy().to_string();
    VnodeProcess::start_with_env(
        &[
            "run",
            "--provider",
            "alibabacloud",
            "--config",
            &config,
            "--listen",
            "127.0.0.1:0",
        ],
        &env,
        Duration::from_secs(30),
    )
}

fn get_json(kubeconfig: &Path, args: &[&str]) -> Result<serde_json::Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let (code, out, err) = kubectl(kubeconfig, &all)?;
    if code != 0 {
        bail!("kubectl {args:?} failed: {err}");
    }
    Ok(serde_json::from_str(&out)?)
}

fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    while Instant::now() < deadline {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("timed out waiting for {what} (last error: {last_err:?})")
}

/// Status code of a plain-HTTP GET (the daemon's operations port).
fn http_status(base: &str, path: &str) -> Result<u16> {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response.split_whitespace().nth(1).context("status line")?;
    Ok(code.parse()?)
}

fn ready(node: &serde_json::Value) -> bool {
    node["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

#[test]
fn daemon_bad_config_fails_with_one_clear_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    for (drop, set, needle) in [
        (Some("ECI_REGION"), None, "missing setting ECI_REGION"),
        (
            None,
            Some(("KUBELET_PORT", "ten")),
            "invalid setting KUBELET_PORT",
        ),
        (
            None,
            Some(("VKUBELET_TAINT_EFFECT", "Sometimes")),
            "invalid setting VKUBELET_TAINT_EFFECT",
        ),
        (
            None,
            Some(("ECI_VSWITCH", "vsw-a,,vsw-b")),
            "invalid setting ECI_VSWITCH",
        ),
    ] {
        let mut cmd = std::process::Command::new(vnode_bin());
        cmd.args(["run", "--provider", "alibabacloud"]).env_clear();
        for (k, v) in seed_env(&kubeconfig) {
            if Some(k.as_str()) != drop {
                cmd.env(k, v);
            }
        }
        if let Some((k, v)) = set {
            cmd.env(k, v);
        }
        let out = cmd.output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(lines.len(), 1, "exactly one line expected: {stderr}");
        assert!(lines[0].contains(needle), "{needle}: {stderr}");
        assert!(!stderr.contains("never-printed-secret"));
    }
    let (code, _, err) = run_vnode(&["run", "--provider", "azure"])?;
    assert_eq!(code, 2);
    assert!(err.contains("VNODE_PROVIDER (--provider)"), "{err}");
    Ok(())
}

#[test]
fn daemon_help_documents_the_seed_variables() -> Result<()> {
    let (code, out, _) = run_vnode(&["run", "--help"])?;
    assert_eq!(code, 0);
    for var in [
        "KUBELET_PORT",
        "VKUBELET_POD_IP",
        "VKUBELET_TAINT_KEY",
        "ECI_REGION",
        "ECI_VSWITCH",
        "ECI_SECURITY_GROUP",
        "ECI_ACCESS_KEY",
        "ECI_SECRET_KEY",
        "ECI_CLUSTER_NAME",
        "DEFAULT_NODE_NAME",
        "ECI_ENDPOINT",
    ] {
        assert!(out.contains(var), "{var} missing from --help");
    }
    Ok(())
}

#[test]
fn daemon_registers_a_ready_agent_node_renews_its_lease_and_recreates_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let api_dir = dir.path().join("apiserver");
    let _apiserver = start_apiserver(&api_dir)?;
    let kubeconfig = api_dir.join("kubeconfig");
    let config = write_config(dir.path(), &api_dir)?;
    let daemon = start_daemon(&config, &seed_env(&kubeconfig), "replica-a")?;
    assert!(
        daemon.url.starts_with("http://127.0.0.1:"),
        "{}",
        daemon.url
    );

    let node = wait_for("node Ready", Duration::from_secs(30), || {
        let node = get_json(&kubeconfig, &["get", "node", "virtual-kubelet"])?;
        Ok(ready(&node).then_some(node))
    })?;
    assert_eq!(http_status(&daemon.url, "/healthz")?, 200);
    wait_for("/readyz", Duration::from_secs(10), || {
        Ok((http_status(&daemon.url, "/readyz")? == 200).then_some(()))
    })?;
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["type"], "virtual-kubelet");
    assert_eq!(labels["kubernetes.io/role"], "agent");
    assert_eq!(labels["beta.kubernetes.io/os"], "linux");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["kubernetes.io/hostname"], "virtual-kubelet");
    assert_eq!(
        node["spec"]["taints"][0]["key"],
        "virtual-kubelet.io/provider"
    );
    assert_eq!(node["spec"]["taints"][0]["effect"], "NoSchedule");
    assert_eq!(node["status"]["addresses"][0]["address"], "127.0.0.1");
    assert!(
        node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
            .as_i64()
            .unwrap_or(0)
            > 0
    );

    // `kubectl get node` shows the seed's expectation: Ready, role agent.
    let (code, table, err) = kubectl(&kubeconfig, &["get", "node", "virtual-kubelet"])?;
    assert_eq!(code, 0, "{err}");
    let row = table.lines().nth(1).context("table row")?;
    assert!(row.contains("Ready") && row.contains("agent"), "{table}");

    // The lease renews.
    let renew = |kc: &Path| -> Result<String> {
        let lease = get_json(
            kc,
            &["-n", "kube-node-lease", "get", "lease", "virtual-kubelet"],
        )?;
        Ok(lease["spec"]["renewTime"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    };
    let first = wait_for("lease", Duration::from_secs(10), || {
        Ok(Some(renew(&kubeconfig)?))
    })?;
    wait_for("lease renewal", Duration::from_secs(10), || {
        Ok((renew(&kubeconfig)? != first).then_some(()))
    })?;

    // Deleted → re-created (new UID).
    let uid = node["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (code, _, err) = kubectl(
        &kubeconfig,
        &["delete", "node", "virtual-kubelet", "--wait=false"],
    )?;
    assert_eq!(code, 0, "{err}");
    wait_for("node re-created", Duration::from_secs(20), || {
        let Ok(node) = get_json(&kubeconfig, &["get", "node", "virtual-kubelet"]) else {
            return Ok(None);
        };
        Ok((node["metadata"]["uid"].as_str() != Some(uid.as_str()) && ready(&node)).then_some(()))
    })?;

    let status = daemon.terminate(Duration::from_secs(15))?;
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    Ok(())
}

#[test]
fn daemon_standby_takes_over_when_the_leader_stops() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let api_dir = dir.path().join("apiserver");
    let _apiserver = start_apiserver(&api_dir)?;
    let kubeconfig = api_dir.join("kubeconfig");
    let config = write_config(dir.path(), &api_dir)?;
    let env = seed_env(&kubeconfig);
    let holder = |kc: &Path| -> Result<String> {
        let lease = get_json(
            kc,
            &["-n", "default", "get", "lease", "vnode-virtual-kubelet"],
        )?;
        Ok(lease["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    };
    let a = start_daemon(&config, &env, "replica-a")?;
    wait_for("a leads", Duration::from_secs(20), || {
        Ok((holder(&kubeconfig)? == "replica-a").then_some(()))
    })?;
    let b = start_daemon(&config, &env, "replica-b")?;
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        holder(&kubeconfig)?,
        "replica-a",
        "the standby must not take a held lease"
    );
    // kill -9: no release; b must take over once the 4 s lease expires.
    std::process::Command::new("kill")
        .args(["-9", &a.pid().to_string()])
        .status()?;
    let killed_at = Instant::now();
    wait_for("b leads", Duration::from_secs(20), || {
        Ok((holder(&kubeconfig)? == "replica-b").then_some(()))
    })?;
    assert!(
        killed_at.elapsed() < Duration::from_secs(12),
        "takeover took {:?}",
        killed_at.elapsed()
    );
    drop(a);
    let status = b.terminate(Duration::from_secs(15))?;
    assert!(status.success(), "{status:?}");
    Ok(())
}

// The pod path (create, adopt after kill -9, delete) is tested end to end in daemon_pods.rs.
