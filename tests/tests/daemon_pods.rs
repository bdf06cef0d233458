//! End-to-end: the seed's nginx pod through the real processes — `vnode apiserver`,
//! `vnode eci-emulator` and `vnode run` — driven with `kubectl`: a tagged container group
//! appears in the emulator, the pod carries the decision's annotations and a `Created` event,
//! a `kill -9` and restart of the daemon still leaves exactly one group, and `kubectl delete
//! pod` removes the group and the pod.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use vnode_eci::model::{ContainerGroup, DescribeContainerGroupsRequest};
use vnode_eci::{Credentials, EciClient, EciClientConfig, RateLimits};
use vnode_tests::{VnodeProcess, kubectl};

const NGINX: &str = "apiVersion: v1
kind: Pod
metadata:
  name: nginx
spec:
  containers:
  - image: nginx
    imagePullPolicy: Always
    name: nginx
  nodeSelector:
    kubernetes.io/role: agent
    beta.kubernetes.io/os: linux
    type: virtual-kubelet
  tolerations:
  - key: virtual-kubelet.io/provider
    operator: Exists
";

/// The API server under test has no TokenRequest endpoint yet, so the default
/// ServiceAccount's token is not mounted (a real cluster mints it; the daemon resolves it
/// through TokenRequest).
const NO_TOKEN_SA: &str = "apiVersion: v1
kind: ServiceAccount
metadata:
  name: default
  namespace: default
automountServiceAccountToken: false
";

fn env(kubeconfig: &Path, eci_url: &str) -> Vec<(String, String)> {
    [
        ("KUBECONFIG", kubeconfig.to_string_lossy().to_string()),
        ("KUBELET_PORT", "10250".into()),
        ("VKUBELET_POD_IP", "127.0.0.1".into()),
        ("VKUBELET_TAINT_KEY", "virtual-kubelet.io/provider".into()),
        ("VKUBELET_TAINT_VALUE", "alibabacloud".into()),
        ("VKUBELET_TAINT_EFFECT", "NoSchedule".into()),
        ("ECI_REGION", "cn-hangzhou".into()),
        (
            "ECI_VSWITCH",
            "cn-hangzhou-h=vsw-e2e-h,cn-hangzhou-i=vsw-e2e-i".into(),
        ),
        ("ECI_SECURITY_GROUP", "sg-e2e".into()),
        (
            "ECI_ACCESS_KEY",
            vnode_eci_emulator::DEFAULT_ACCESS_KEY_ID.into(),
        ),
        (
            "ECI_SECRET_KEY",
            vnode_eci_emulator::DEFAULT_ACCESS_KEY_SECRET.into(),
        ),
        ("ECI_CLUSTER_NAME", "e2e".into()),
        ("ECI_ENDPOINT", eci_url.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn start_daemon(dir: &Path, api_dir: &Path, env: &[(String, String)]) -> Result<VnodeProcess> {
    let config = dir.join("vnode.yaml");
    std::fs::write(
        &config,
        format!(
            "intervals: {{leaseRenew: 1s, nodeStatus: 3s}}\n\
             listen: {{kubelet: \"127.0.0.1:0\"}}\n\
             kubelet:\n  clientCaFile: {}\n  authorization: alwaysAllow\n\
             leaderElection: {{enabled: false}}\n\
             shutdownGrace: 5s\n",
            api_dir.join("ca.crt").display()
        ),
    )?;
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("POD_NAME", "replica-a"));
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
        Duration::from_secs(60),
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
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("timed out waiting for {what} (last error: {last_err:?})")
}

fn apply(kubeconfig: &Path, dir: &Path, name: &str, yaml: &str) -> Result<()> {
    let file = dir.join(name);
    std::fs::write(&file, yaml)?;
    let (code, _, err) = kubectl(kubeconfig, &["apply", "-f", &file.to_string_lossy()])?;
    if code != 0 {
        bail!("kubectl apply {name} failed: {err}");
    }
    Ok(())
}

/// Live (not deleted) groups tagged with the e2e cluster, read through the production client.
fn groups(rt: &tokio::runtime::Runtime, eci: &EciClient) -> Result<Vec<ContainerGroup>> {
    let all = rt.block_on(
        eci.describe_all_container_groups(&DescribeContainerGroupsRequest {
            tags: vec![vnode_eci::model::Tag::new("vnode.io/cluster", "e2e")],
            ..Default::default()
        }),
    )?;
    Ok(all
        .into_iter()
        .filter(|g| !g.status.is_terminal() && g.status.as_str() != "Deleted")
        .collect())
}

/// Status code of a plain-HTTP GET (the daemon's operations port).
fn http_status(base: &str, path: &str) -> Result<u16> {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("no status line"))?;
    Ok(code.parse()?)
}

fn tag<'a>(g: &'a ContainerGroup, key: &str) -> Option<&'a str> {
    g.tags
        .iter()
        .find(|t| t.key == key)
        .map(|t| t.value.as_str())
}

#[test]
fn seed_nginx_pod_gets_one_group_survives_kill_9_and_is_deleted_with_its_group() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let api_dir = dir.path().join("apiserver");
    let api_dir_s = api_dir.to_string_lossy().to_string();
    let _apiserver = VnodeProcess::start(
        &["apiserver", "--listen", "127.0.0.1:0", "--dir", &api_dir_s],
        Duration::from_secs(30),
    )?;
    let kubeconfig = api_dir.join("kubeconfig");
    let _emulator = VnodeProcess::start(
        &["eci-emulator", "--listen", "127.0.0.1:0", "--no-quotas"],
        Duration::from_secs(30),
    )?;
    let eci_url = _emulator.url.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let eci = EciClient::new(EciClientConfig {
        endpoint: Some(eci_url.clone()),
        rate_limits: RateLimits::unlimited(),
        ..EciClientConfig::new(
            "cn-hangzhou",
            Credentials::new(
                vnode_eci_emulator::DEFAULT_ACCESS_KEY_ID,
                vnode_eci_emulator::DEFAULT_ACCESS_KEY_SECRET,
            ),
        )
    })?;
    let env = env(&kubeconfig, &eci_url);
    let daemon = start_daemon(dir.path(), &api_dir, &env)?;

    apply(&kubeconfig, dir.path(), "sa.yaml", NO_TOKEN_SA)?;
    apply(&kubeconfig, dir.path(), "nginx.yaml", NGINX)?;
    // The default scheduler is not part of this test: bind the pod like it would.
    let binding = dir.path().join("binding.json");
    std::fs::write(
        &binding,
        r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"nginx"},"target":{"apiVersion":"v1","kind":"Node","name":"virtual-kubelet"}}"#,
    )?;
    let pod = get_json(&kubeconfig, &["-n", "default", "get", "pod", "nginx"])?;
    if pod["spec"]["nodeName"].as_str().unwrap_or("").is_empty() {
        let (code, _, err) = kubectl(
            &kubeconfig,
            &[
                "create",
                "--raw",
                "/api/v1/namespaces/default/pods/nginx/binding",
                "-f",
                &binding.to_string_lossy(),
            ],
        )?;
        if code != 0 {
            bail!("binding the pod failed: {err}");
        }
    }

    let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let annotated = wait_for("the group-id annotation", Duration::from_secs(60), || {
        let pod = get_json(&kubeconfig, &["-n", "default", "get", "pod", "nginx"])?;
        Ok(
            pod["metadata"]["annotations"]["vnode.io/container-group-id"]
                .as_str()
                .map(|_| pod.clone()),
        )
    })?;
    let ann = &annotated["metadata"]["annotations"];
    let group_id = ann["vnode.io/container-group-id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        ann["vnode.io/placement-plugin"]
            .as_str()
            .is_some_and(|p| p.starts_with("zone-spread@")),
        "{ann}"
    );
    assert!(
        ann["vnode.io/translator-plugin"]
            .as_str()
            .is_some_and(|p| p.starts_with("translator-default@")),
        "{ann}"
    );
    assert_eq!(ann["vnode.io/zone"], "cn-hangzhou-h", "{ann}");
    assert!(ann["vnode.io/spec"].is_string(), "{ann}");

    let live = groups(&rt, &eci)?;
    assert_eq!(live.len(), 1, "{live:?}");
    let g = &live[0];
    assert_eq!(g.container_group_id, group_id);
    assert_eq!(tag(g, "vnode.io/pod-uid"), Some(uid.as_str()));
    assert_eq!(tag(g, "vnode.io/node"), Some("virtual-kubelet"));
    assert_eq!(tag(g, "vnode.io/namespace"), Some("default"));
    assert_eq!(tag(g, "vnode.io/pod-name"), Some("nginx"));

    wait_for("the Created event", Duration::from_secs(30), || {
        let events = get_json(&kubeconfig, &["-n", "default", "get", "events"])?;
        Ok(events["items"]
            .as_array()
            .is_some_and(|items| {
                items
                    .iter()
                    .any(|e| e["reason"] == "Created" && e["involvedObject"]["name"] == "nginx")
            })
            .then_some(()))
    })?;

    // kill -9 and restart: the restarted daemon adopts the group; still exactly one.
    let status = std::process::Command::new("kill")
        .args(["-KILL", &daemon.pid().to_string()])
        .status()?;
    assert!(status.success());
    drop(daemon);
    let daemon = start_daemon(dir.path(), &api_dir, &env)?;
    // Ready = node registered and the pod store listed; then give it time to list its
    // groups, adopt, and (wrongly, if it would) create.
    let ops = daemon.url.clone();
    wait_for(
        "the restarted daemon to be ready",
        Duration::from_secs(30),
        || Ok((http_status(&ops, "/readyz")? == 200).then_some(())),
    )?;
    std::thread::sleep(Duration::from_secs(3));
    let live = groups(&rt, &eci)?;
    assert_eq!(live.len(), 1, "still exactly one group: {live:?}");
    assert_eq!(live[0].container_group_id, group_id);

    // Pods reaching Running needs the observer (status from ECI); when it is wired, the
    // emulator's instant-ish nginx shows up as Running here.
    let phase = wait_for("the pod to report Running", Duration::from_secs(20), || {
        let pod = get_json(&kubeconfig, &["-n", "default", "get", "pod", "nginx"])?;
        Ok((pod["status"]["phase"] == "Running").then_some(()))
    });
    if phase.is_err() {
        eprintln!(
            "note: pod status is not Running yet (the ECI status observer is not wired in this build)"
        );
    }

    let (code, _, err) = kubectl(
        &kubeconfig,
        &["-n", "default", "delete", "pod", "nginx", "--timeout=60s"],
    )?;
    assert_eq!(code, 0, "{err}");
    wait_for("the group to be deleted", Duration::from_secs(30), || {
        Ok(groups(&rt, &eci)?.is_empty().then_some(()))
    })?;
    let (code, _, _) = kubectl(&kubeconfig, &["-n", "default", "get", "pod", "nginx"])?;
    assert_ne!(code, 0, "the pod is gone");
    daemon.terminate(Duration::from_secs(20))?;
    Ok(())
}
