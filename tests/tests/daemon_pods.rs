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
    // A reconcile sweep every second, so the test can wait for one after the restart.
    let mut sb = Sandbox::builder()
        .config("intervals: {reconcile: 1s}")
        .start()?;
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

    wait_for("the Created event", Duration::from_secs(60), || {
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
    // Ready = node registered and the pod store listed. Then proof that the restarted
    // daemon has handled the pod and the group (instead of a pause that a slow machine may
    // outlast): the pod queue is empty and a listing and reconcile sweep begun after that
    // has finished — by then a wrong create would show as a second group.
    wait_for(
        "the restarted daemon to be ready",
        Duration::from_secs(60),
        || Ok((http_status(&ops, "/readyz")? == 200).then_some(())),
    )?;
    wait_for(
        "the restarted daemon's pod queue to drain",
        Duration::from_secs(60),
        || Ok((sb.daemon_metric("vnode_pod_queue_depth", &[])? == 0.0).then_some(())),
    )?;
    sb.wait_for_sweep(Duration::from_secs(60))?;
    let live = sb.live_groups()?;
    assert_eq!(live.len(), 1, "still exactly one group: {live:?}");
    assert_eq!(live[0].container_group_id, group_id);

    // Status comes from ECI (the observer): the emulator's nginx shows up as Running.
    wait_for("the pod to report Running", Duration::from_secs(60), || {
        Ok((sb.pod("nginx")?["status"]["phase"] == "Running").then_some(()))
    })?;

    let (code, _, err) =
        sb.kubectl(&["-n", "default", "delete", "pod", "nginx", "--timeout=60s"])?;
    assert_eq!(code, 0, "{err}");
    wait_for("the group to be deleted", Duration::from_secs(60), || {
        Ok(sb.live_groups()?.is_empty().then_some(()))
    })?;
    let (code, _, _) = sb.kubectl(&["-n", "default", "get", "pod", "nginx"])?;
    assert_ne!(code, 0, "the pod is gone");
    sb.terminate_daemon()?;
    Ok(())
}

/// Seconds from `start` until pod `name` has a container group, failing after `limit`.
fn seconds_until_group(sb: &Sandbox, name: &str, limit: Duration) -> Result<f64> {
    let start = std::time::Instant::now();
    wait_for(&format!("{name} to get a container group"), limit, || {
        let pod = sb.pod(name)?;
        Ok(
            pod["metadata"]["annotations"]["vnode.io/container-group-id"]
                .as_str()
                .map(|_| ()),
        )
    })?;
    Ok(start.elapsed().as_secs_f64())
}

fn has_event(sb: &Sandbox, pod: &str, reason: &str) -> Result<bool> {
    Ok(sb.events()?.iter().any(|e| {
        e["reason"] == reason
            && (e["involvedObject"]["name"] == pod || e["regarding"]["name"] == pod)
    }))
}

#[test]
fn a_pod_waiting_for_a_configmap_or_secret_starts_as_soon_as_it_appears() -> Result<()> {
    let sb = Sandbox::start()?;
    // The slow re-check of a blocked pod is a minute; everything below must be far quicker.
    // (20 s leaves room for a loaded machine and is still a third of that minute.)
    let prompt = Duration::from_secs(20);
    let pod = |name: &str, env: &str| {
        format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  containers:
  - image: nginx
    name: app
    env:
    - name: VALUE
      valueFrom: {env}
  tolerations:
  - key: virtual-kubelet.io/provider
    operator: Exists
"
        )
    };
    sb.apply(
        "needs-config.yaml",
        &pod(
            "needs-config",
            "{configMapKeyRef: {name: app-config, key: greeting}}",
        ),
    )?;
    sb.apply(
        "needs-secret.yaml",
        &pod(
            "needs-secret",
            "{secretKeyRef: {name: app-secret, key: password}}",
        ),
    )?;
    for (name, reason) in [
        ("needs-config", "MandatoryConfigMapNotFound"),
        ("needs-secret", "MandatorySecretNotFound"),
    ] {
        wait_for(
            &format!("{reason} on {name}"),
            Duration::from_secs(60),
            || Ok(has_event(&sb, name, reason)?.then_some(())),
        )?;
    }
    // Blocked for real: the events above come from the step that found the references
    // missing, and a blocked pod waits for a change (or the minute-long re-check) before it
    // tries again. So nothing was created, and nothing will be until the objects appear.
    assert!(
        sb.live_groups()?.is_empty(),
        "no group without the references"
    );
    let creates = sb.daemon_metric(
        "vnode_eci_pod_calls_total",
        &[("action", "CreateContainerGroup")],
    )?;
    assert_eq!(
        creates, 0.0,
        "no CreateContainerGroup call without the references"
    );

    // The ConfigMap appears → the pod starts within seconds.
    sb.kubectl_ok(&[
        "-n",
        "default",
        "create",
        "configmap",
        "app-config",
        "--from-literal=greeting=hello",
    ])?;
    let took = seconds_until_group(&sb, "needs-config", prompt)?;
    eprintln!("needs-config started {took:.1} s after its ConfigMap appeared");

    // The Secret appears without the key → still blocked (a key event); the key is added →
    // the pod starts within seconds.
    sb.kubectl_ok(&[
        "-n",
        "default",
        "create",
        "secret",
        "generic",
        "app-secret",
        "--from-literal=other=x",
    ])?;
    wait_for("MandatorySecretKeyNotFound on needs-secret", prompt, || {
        Ok(has_event(&sb, "needs-secret", "MandatorySecretKeyNotFound")?.then_some(()))
    })?;
    // The event comes from the step that found the key missing (the positive marker that
    // the daemon has seen the Secret); the pod waits for the next change.
    let pod_now = sb.pod("needs-secret")?;
    assert!(
        pod_now["metadata"]["annotations"]["vnode.io/container-group-id"].is_null(),
        "still blocked on the missing key: {pod_now}"
    );
    let creates = sb.daemon_metric(
        "vnode_eci_pod_calls_total",
        &[("action", "CreateContainerGroup")],
    )?;
    assert_eq!(creates, 1.0, "only needs-config's group was created");
    sb.kubectl_ok(&[
        "-n",
        "default",
        "patch",
        "secret",
        "app-secret",
        "--type=merge",
        "-p",
        r#"{"stringData":{"password":"s3cret"}}"#,
    ])?;
    let took = seconds_until_group(&sb, "needs-secret", prompt)?;
    eprintln!("needs-secret started {took:.1} s after its key was added");
    wait_for("both pods Running", Duration::from_secs(60), || {
        let pods = sb.pods()?;
        Ok(
            (pods.len() == 2 && pods.iter().all(|p| p["status"]["phase"] == "Running"))
                .then_some(()),
        )
    })?;
    Ok(())
}
