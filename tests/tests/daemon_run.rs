//! End-to-end: `vnode run` against `vnode apiserver`, configured through the seed manifest's
//! environment variables, checked with the real `kubectl`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use vnode_tests::{
    Sandbox, SandboxBuilder, http_status, node_is_ready, run_vnode, set_env, vnode_bin, wait_for,
};

/// The AccessKey pair, vSwitches and security group of this file's daemons.
const ACCESS_KEY: (&str, &str) = ("AKIDTEST", "never-printed-secret");
const VSWITCHES: &str = "vsw-test-a,vsw-test-b";
const SECURITY_GROUP: &str = "sg-test";

/// The seed manifest's environment (ECI values are never dialled by these tests).
fn seed_env(kubeconfig: &Path) -> Vec<(String, String)> {
    let mut env = vnode_tests::seed_env(kubeconfig, "http://127.0.0.1:9", ACCESS_KEY);
    set_env(&mut env, "ECI_VSWITCH", VSWITCHES);
    set_env(&mut env, "ECI_SECURITY_GROUP", SECURITY_GROUP);
    env
}

/// The seed's environment on a sandbox without ECI (nothing here dials it), leader election
/// on with a short lease.
fn sandbox() -> SandboxBuilder {
    Sandbox::builder()
        .without_emulator()
        .access_key(ACCESS_KEY.0, ACCESS_KEY.1)
        .env("ECI_VSWITCH", VSWITCHES)
        .env("ECI_SECURITY_GROUP", SECURITY_GROUP)
        .env_remove("ECI_CLUSTER_NAME")
        .config("leaderElection: {enabled: true, namespace: default, leaseDuration: 4s, retryPeriod: 1s}")
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
        assert!(!stderr.contains(ACCESS_KEY.1));
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
    let mut sb = sandbox().start()?;
    let daemon_url = sb.daemon()?.url.clone();
    assert!(daemon_url.starts_with("http://127.0.0.1:"), "{daemon_url}");

    let node = sb.wait_node_ready()?;
    assert_eq!(http_status(&daemon_url, "/healthz")?, 200);
    wait_for("/readyz", Duration::from_secs(30), || {
        Ok((http_status(&daemon_url, "/readyz")? == 200).then_some(()))
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
    let (code, table, err) = sb.kubectl(&["get", "node", "virtual-kubelet"])?;
    assert_eq!(code, 0, "{err}");
    let row = table.lines().nth(1).context("table row")?;
    assert!(row.contains("Ready") && row.contains("agent"), "{table}");

    // The lease renews.
    let renew = || -> Result<String> {
        let lease = sb.get_json(&["-n", "kube-node-lease", "get", "lease", "virtual-kubelet"])?;
        Ok(lease["spec"]["renewTime"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    };
    let first = wait_for("lease", Duration::from_secs(30), || Ok(Some(renew()?)))?;
    wait_for("lease renewal", Duration::from_secs(30), || {
        Ok((renew()? != first).then_some(()))
    })?;

    // Deleted → re-created (new UID).
    let uid = node["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (code, _, err) = sb.kubectl(&["delete", "node", "virtual-kubelet", "--wait=false"])?;
    assert_eq!(code, 0, "{err}");
    wait_for("node re-created", Duration::from_secs(60), || {
        let Ok(node) = sb.get_json(&["get", "node", "virtual-kubelet"]) else {
            return Ok(None);
        };
        Ok(
            (node["metadata"]["uid"].as_str() != Some(uid.as_str()) && node_is_ready(&node))
                .then_some(()),
        )
    })?;

    let status = sb.terminate_daemon()?;
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    Ok(())
}

#[test]
fn daemon_standby_takes_over_when_the_leader_stops() -> Result<()> {
    let sb = sandbox().without_daemon().start()?;
    let holder = || -> Result<String> {
        let lease = sb.get_json(&["-n", "default", "get", "lease", "vnode-virtual-kubelet"])?;
        Ok(lease["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    };
    let a = sb.spawn_daemon("replica-a")?;
    wait_for("a leads", Duration::from_secs(60), || {
        Ok((holder()? == "replica-a").then_some(()))
    })?;
    let b = sb.spawn_daemon("replica-b")?;
    // The standby must not take a held lease. Instead of a pause (which a loaded machine
    // may spend without b running a single election round), watch the lease until `a` has
    // renewed it six times after b was up: b, retrying every second, has then seen the lease
    // held and renewed for longer than its 4 s duration, and it stays a's throughout.
    let mut renewals = Vec::new();
    let mut taken = None;
    wait_for(
        "six renewals by a while b stands by",
        Duration::from_secs(60),
        || {
            let lease = sb.get_json(&["-n", "default", "get", "lease", "vnode-virtual-kubelet"])?;
            if lease["spec"]["holderIdentity"] != "replica-a" {
                taken = Some(lease);
                return Ok(Some(()));
            }
            let renewed = lease["spec"]["renewTime"].clone();
            if renewals.last() != Some(&renewed) {
                renewals.push(renewed);
            }
            Ok((renewals.len() > 6).then_some(()))
        },
    )?;
    assert!(
        taken.is_none(),
        "the standby must not take a held lease: {taken:?}"
    );
    // kill -9: no release; b must take over once the 4 s lease expires.
    let killed = std::process::Command::new("kill")
        .args(["-9", &a.pid().to_string()])
        .status()?;
    assert!(killed.success());
    let killed_at = Instant::now();
    // (The bound is for a loaded machine; unloaded the takeover takes 4–6 s.)
    wait_for("b leads", Duration::from_secs(60), || {
        Ok((holder()? == "replica-b").then_some(()))
    })?;
    eprintln!("b took over {:?} after a was killed", killed_at.elapsed());
    drop(a);
    let status = b.terminate(Duration::from_secs(15))?;
    assert!(status.success(), "{status:?}");
    Ok(())
}

// The pod path (create, adopt after kill -9, delete) is tested end to end in daemon_pods.rs.
