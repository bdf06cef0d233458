//! End-to-end: the seed's nginx pod through the real processes — `vnode apiserver`,
//! `vnode eci-emulator` and `vnode run` — driven with `kubectl`: a tagged container group
//! appears in the emulator, the pod carries the decision's annotations and a `Created` event,
//! a `kill -9` and restart of the daemon still leaves exactly one group, and `kubectl delete
//! pod` removes the group and the pod.

use std::time::Duration;

use anyhow::{Result, bail};
use vnode_tests::{Sandbox, group_tag as tag, http_status, wait_for};

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

#[test]
fn seed_nginx_pod_gets_one_group_survives_kill_9_and_is_deleted_with_its_group() -> Result<()> {
    let mut sb = Sandbox::start()?;
    sb.apply("nginx.yaml", NGINX)?;
    // The default scheduler is not part of this test: bind the pod like it would.
    let binding = sb.dir.path().join("binding.json");
    std::fs::write(
        &binding,
        r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"nginx"},"target":{"apiVersion":"v1","kind":"Node","name":"virtual-kubelet"}}"#,
    )?;
    let pod = sb.pod("nginx")?;
    if pod["spec"]["nodeName"].as_str().unwrap_or("").is_empty() {
        let (code, _, err) = sb.kubectl(&[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/nginx/binding",
            "-f",
            &binding.to_string_lossy(),
        ])?;
        if code != 0 {
            bail!("binding the pod failed: {err}");
        }
    }

    let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let annotated = wait_for("the group-id annotation", Duration::from_secs(60), || {
        let pod = sb.pod("nginx")?;
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

    let live = sb.live_groups()?;
    assert_eq!(live.len(), 1, "{live:?}");
    let g = &live[0];
    assert_eq!(g.container_group_id, group_id);
    assert_eq!(tag(g, "vnode.io/pod-uid"), Some(uid.as_str()));
    assert_eq!(tag(g, "vnode.io/node"), Some("virtual-kubelet"));
    assert_eq!(tag(g, "vnode.io/namespace"), Some("default"));
    assert_eq!(tag(g, "vnode.io/pod-name"), Some("nginx"));

    wait_for("the Created event", Duration::from_secs(30), || {
        let events = sb.get_json(&["-n", "default", "get", "events"])?;
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
    sb.kill_daemon()?;
    let ops = sb.restart_daemon()?.url.clone();
    // Ready = node registered and the pod store listed; then give it time to list its
    // groups, adopt, and (wrongly, if it would) create.
    wait_for(
        "the restarted daemon to be ready",
        Duration::from_secs(30),
        || Ok((http_status(&ops, "/readyz")? == 200).then_some(())),
    )?;
    std::thread::sleep(Duration::from_secs(3));
    let live = sb.live_groups()?;
    assert_eq!(live.len(), 1, "still exactly one group: {live:?}");
    assert_eq!(live[0].container_group_id, group_id);

    // Status comes from ECI (the observer): the emulator's nginx shows up as Running.
    wait_for("the pod to report Running", Duration::from_secs(20), || {
        Ok((sb.pod("nginx")?["status"]["phase"] == "Running").then_some(()))
    })?;

    let (code, _, err) =
        sb.kubectl(&["-n", "default", "delete", "pod", "nginx", "--timeout=60s"])?;
    assert_eq!(code, 0, "{err}");
    wait_for("the group to be deleted", Duration::from_secs(30), || {
        Ok(sb.live_groups()?.is_empty().then_some(()))
    })?;
    let (code, _, _) = sb.kubectl(&["-n", "default", "get", "pod", "nginx"])?;
    assert_ne!(code, 0, "the pod is gone");
    sb.terminate_daemon()?;
    Ok(())
}
