//! End-to-end: status, reconcile and recovery through the real processes — `vnode apiserver`,
//! `vnode eci-emulator` (instant lifecycle) and `vnode run`:
//!
//! * a pod reaches Running with its pod IP, conditions and container statuses from ECI;
//! * a container group carrying this node's tags but a UID no pod has is deleted (orphan);
//! * chaos: `kill -9` of the daemon in the middle of a 200-pod burst, then a restart: every pod
//!   Running, exactly one group per pod, no orphans — also with the emulator injecting 20 %
//!   errors, throttling and latency.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use vnode_eci::model::{
    Container, ContainerGroup, CreateContainerGroupRequest, DescribeContainerGroupsRequest, Tag,
};
use vnode_eci::{Credentials, EciClient, EciClientConfig, RateLimits};
use vnode_tests::{VnodeProcess, kubectl};

const CLUSTER: &str = "e2e-recovery";

/// No TokenRequest in the test API server: no token to mount.
const NO_TOKEN_SA: &str = "apiVersion: v1
kind: ServiceAccount
metadata:
  name: default
  namespace: default
automountServiceAccountToken: false
";

fn pod_yaml(name: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: default
spec:
  containers:
  - image: nginx
    name: nginx
  nodeSelector:
    type: virtual-kubelet
  tolerations:
  - key: virtual-kubelet.io/provider
    operator: Exists
"
    )
}

struct World {
    dir: tempfile::TempDir,
    _apiserver: VnodeProcess,
    _emulator: VnodeProcess,
    kubeconfig: std::path::PathBuf,
    env: Vec<(String, String)>,
    eci: EciClient,
    rt: tokio::runtime::Runtime,
}

fn world(emulator_profile: &str) -> Result<World> {
    let dir = tempfile::tempdir()?;
    let api_dir = dir.path().join("apiserver");
    let api_dir_s = api_dir.to_string_lossy().to_string();
    let apiserver = VnodeProcess::start(
        &["apiserver", "--listen", "127.0.0.1:0", "--dir", &api_dir_s],
        Duration::from_secs(30),
    )?;
    let kubeconfig = api_dir.join("kubeconfig");
    let profile = dir.path().join("profile.yaml");
    std::fs::write(&profile, emulator_profile)?;
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
    let eci_url = emulator.url.clone();
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
    let env = [
        ("KUBECONFIG", kubeconfig.to_string_lossy().to_string()),
        ("KUBELET_PORT", "10250".into()),
        ("VKUBELET_POD_IP", "127.0.0.1".into()),
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
        ("ECI_CLUSTER_NAME", CLUSTER.into()),
        ("ECI_ENDPOINT", eci_url),
        ("POD_NAME", "replica-a".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let w = World {
        dir,
        _apiserver: apiserver,
        _emulator: emulator,
        kubeconfig,
        env,
        eci,
        rt,
    };
    apply(&w, "sa.yaml", NO_TOKEN_SA)?;
    Ok(w)
}

fn start_daemon(w: &World) -> Result<VnodeProcess> {
    let config = w.dir.path().join("vnode.yaml");
    std::fs::write(
        &config,
        format!(
            "intervals: {{leaseRenew: 1s, nodeStatus: 3s, podStatusPoll: 300ms, podStatusResync: 3s, reconcile: 1s, orphanMinAge: 1s}}\n\
             listen: {{kubelet: \"127.0.0.1:0\"}}\n\
             kubelet:\n  clientCaFile: {}\n  authorization: alwaysAllow\n\
             leaderElection: {{enabled: false}}\n\
             concurrency: {{podWorkers: 64}}\n\
             shutdownGrace: 5s\n",
            w.dir.path().join("apiserver").join("ca.crt").display()
        ),
    )?;
    let env: Vec<(&str, &str)> = w
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
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

fn apply(w: &World, name: &str, yaml: &str) -> Result<()> {
    let file = w.dir.path().join(name);
    std::fs::write(&file, yaml)?;
    let (code, _, err) = kubectl(&w.kubeconfig, &["apply", "-f", &file.to_string_lossy()])?;
    if code != 0 {
        bail!("kubectl apply {name} failed: {err}");
    }
    Ok(())
}

fn get_json(w: &World, args: &[&str]) -> Result<serde_json::Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let (code, out, err) = kubectl(&w.kubeconfig, &all)?;
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
        std::thread::sleep(Duration::from_millis(300));
    }
    bail!("timed out waiting for {what} (last error: {last_err:?})")
}

fn node_ready(w: &World) -> Result<()> {
    wait_for("node Ready", Duration::from_secs(30), || {
        let node = get_json(w, &["get", "node", "virtual-kubelet"])?;
        Ok(node["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .then_some(()))
    })
}

/// Live groups of this test's cluster, read with the production client.
fn live_groups(w: &World) -> Result<Vec<ContainerGroup>> {
    let all = w.rt.block_on(w.eci.describe_all_container_groups(
        &DescribeContainerGroupsRequest {
            tags: vec![Tag::new("vnode.io/cluster", CLUSTER)],
            ..Default::default()
        },
    ))?;
    Ok(all
        .into_iter()
        .filter(|g| !g.status.is_terminal())
        .collect())
}

fn tag<'a>(g: &'a ContainerGroup, key: &str) -> Option<&'a str> {
    g.tags
        .iter()
        .find(|t| t.key == key)
        .map(|t| t.value.as_str())
}

fn pods(w: &World) -> Result<Vec<serde_json::Value>> {
    let list = get_json(w, &["-n", "default", "get", "pods"])?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

#[test]
fn a_pod_reaches_running_from_eci_and_an_orphan_group_is_deleted() -> Result<()> {
    let w = world("timing: {instant: true}\n")?;
    let daemon = start_daemon(&w)?;
    node_ready(&w)?;
    apply(&w, "web.yaml", &pod_yaml("web"))?;
    let pod = wait_for("web Running", Duration::from_secs(40), || {
        let p = get_json(&w, &["-n", "default", "get", "pod", "web"])?;
        Ok((p["status"]["phase"] == "Running").then_some(p))
    })?;
    let status = &pod["status"];
    assert!(
        status["podIP"].as_str().is_some_and(|ip| !ip.is_empty()),
        "{status}"
    );
    for kind in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        let c = status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == kind).cloned())
            .unwrap_or_default();
        assert_eq!(c["status"], "True", "{kind}: {status}");
    }
    let cs = &status["containerStatuses"][0];
    assert_eq!(cs["name"], "nginx", "{status}");
    assert_eq!(cs["ready"], true, "{status}");
    assert!(cs["state"]["running"].is_object(), "{status}");
    assert!(
        cs["containerID"]
            .as_str()
            .is_some_and(|id| id.starts_with("eci://")),
        "{status}"
    );

    // An orphan: this node's tags, a UID no pod has.
    let orphan =
        w.rt.block_on(w.eci.create_container_group(&CreateContainerGroupRequest {
            container_group_name: "orphan-1".into(),
            containers: vec![Container {
                name: "app".into(),
                image: "nginx".into(),
                ..Default::default()
            }],
            tags: vec![
                Tag::new("vnode.io/cluster", CLUSTER),
                Tag::new("vnode.io/node", "virtual-kubelet"),
                Tag::new("vnode.io/namespace", "default"),
                Tag::new("vnode.io/pod-name", "nobody"),
                Tag::new("vnode.io/pod-uid", "00000000-0000-4000-8000-000000000000"),
            ],
            ..Default::default()
        }))?
        .container_group_id;
    wait_for("the orphan to be deleted", Duration::from_secs(20), || {
        Ok((!live_groups(&w)?
            .iter()
            .any(|g| g.container_group_id == orphan))
        .then_some(()))
    })?;
    // The live pod's group is untouched.
    let live = live_groups(&w)?;
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(tag(&live[0], "vnode.io/pod-name"), Some("web"));
    daemon.terminate(Duration::from_secs(20))?;
    Ok(())
}

/// Creates `n` pods in one `kubectl apply`, kills the daemon with SIGKILL once some groups
/// exist, restarts it, and checks the outcome.
fn burst_with_kill_9(w: &World, n: usize) -> Result<()> {
    let daemon = start_daemon(w)?;
    node_ready(w)?;
    let yaml: Vec<String> = (0..n).map(|i| pod_yaml(&format!("burst-{i:03}"))).collect();
    apply(w, "burst.yaml", &yaml.join("---\n"))?;
    wait_for("the burst to be under way", Duration::from_secs(30), || {
        Ok((live_groups(w)?.len() >= n / 4).then_some(()))
    })?;
    let status = std::process::Command::new("kill")
        .args(["-KILL", &daemon.pid().to_string()])
        .status()?;
    assert!(status.success());
    drop(daemon);
    let daemon = start_daemon(w)?;

    wait_for("every pod Running", Duration::from_secs(45), || {
        let pods = pods(w)?;
        let running = pods
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count();
        Ok((pods.len() == n && running == n).then_some(()))
    })?;
    // Let a sweep pass over the final state, then: exactly one group per pod, no orphans.
    std::thread::sleep(Duration::from_secs(3));
    let pods = pods(w)?;
    let uids: HashMap<String, String> = pods
        .iter()
        .map(|p| {
            (
                p["metadata"]["uid"].as_str().unwrap_or("").to_string(),
                p["metadata"]["annotations"]["vnode.io/container-group-id"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    let live = live_groups(w)?;
    let mut per_uid: HashMap<&str, usize> = HashMap::new();
    for g in &live {
        let uid = tag(g, "vnode.io/pod-uid").unwrap_or("");
        assert!(
            uids.contains_key(uid),
            "orphan group {} (uid {uid})",
            g.container_group_id
        );
        assert_eq!(
            uids[uid], g.container_group_id,
            "the pod's annotation names its group"
        );
        *per_uid.entry(uid).or_default() += 1;
    }
    assert_eq!(per_uid.len(), n, "every pod has a group");
    assert!(
        per_uid.values().all(|c| *c == 1),
        "exactly one group per pod"
    );
    daemon.terminate(Duration::from_secs(20))?;
    Ok(())
}

#[test]
fn kill_9_in_a_200_pod_burst_leaves_every_pod_running_with_one_group_and_no_orphans() -> Result<()>
{
    let w = world("timing: {instant: true}\n")?;
    burst_with_kill_9(&w, 200)
}

#[test]
fn kill_9_in_a_burst_with_eci_errors_throttling_and_latency() -> Result<()> {
    // 20 % of all calls fail: half 500s, half throttled (with x-acs-retry-after); 10 % of
    // calls are 100 ms slower.
    let w = world(
        "timing: {instant: true}\n\
         faults:\n\
         - {kind: error, rate: 0.1, code: InternalError, status: 500}\n\
         - {kind: error, rate: 0.1, code: Throttling.User, status: 400}\n\
         - {kind: latency, rate: 0.1, delay_ms: 100}\n",
    )?;
    burst_with_kill_9(&w, 200)
}
