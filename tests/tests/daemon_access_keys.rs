//! End-to-end: the ECI AccessKey pair never leaves the daemon. `vnode run` gets distinctive
//! `ECI_ACCESS_KEY`/`ECI_SECRET_KEY` values, logs at the most verbose level (`VNODE_LOG=trace`)
//! as JSON, and is driven through a successful pod, ECI errors (injected by the emulator), a
//! placement refusal, `kubectl logs` and `kubectl exec`. Then neither key (nor the secret's
//! base64) appears in the daemon's stderr or stdout, in any Event, on the node or the pods,
//! or in `/metrics`.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use vnode_tests::{Sandbox, http_get, pod_yaml, wait_for};

const ACCESS_KEY_ID: &str = "LTAI5tVnodeE2eKeyIdQx7Rw";
const ACCESS_KEY_SECRET: &str = "vn0deE2eS3cret/Zq8w+Ue4Lk9PzT";

/// Standard base64 (RFC 4648, with padding), the form a leaked key would take in a Secret.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A container that logs a numbered line every 200 ms. The first two CreateContainerGroup
/// calls are throttled (deterministic, so the retry path is always taken), and 10 % of all
/// ECI calls fail at random (half 500s, half throttled).
const PROFILE: &str = "timing: {instant: true}
workloads:
  - image: e2e/logger
    log_lines: [\"ready\"]
    log_every_ms: 200
    log_template: \"line {n}\"
faults:
  - {kind: error, first: 2, code: Throttling.User, status: 400, actions: [CreateContainerGroup]}
  - {kind: error, rate: 0.05, code: InternalError, status: 500}
  - {kind: error, rate: 0.05, code: Throttling.User, status: 400}
";

/// Pod `name` with one container `app` running `image`, with `annotations` (a YAML flow
/// mapping's inside).
fn pod(name: &str, annotations: &str, image: &str) -> String {
    pod_yaml(
        name,
        &format!("  annotations: {{{annotations}}}\n"),
        "",
        &format!("  - image: {image}\n    name: app\n"),
    )
}

/// Every place a leaked key could show up, with the forbidden strings.
fn assert_absent(place: &str, text: &str) -> Result<()> {
    for (what, needle) in [
        ("AccessKey ID", ACCESS_KEY_ID.to_string()),
        ("AccessKey secret", ACCESS_KEY_SECRET.to_string()),
        ("base64 of the secret", base64(ACCESS_KEY_SECRET.as_bytes())),
        ("base64 of the ID", base64(ACCESS_KEY_ID.as_bytes())),
    ] {
        if let Some(at) = text.find(&needle) {
            let start = at.saturating_sub(200);
            let end = (at + needle.len() + 200).min(text.len());
            let context = text.get(start..end).unwrap_or("<not on a char boundary>");
            anyhow::bail!("the {what} leaked into {place}: …{context}…");
        }
    }
    Ok(())
}

#[test]
fn access_keys_never_appear_in_logs_events_objects_or_metrics() -> Result<()> {
    assert_eq!(base64(b"Man"), "TWFu");
    assert_eq!(base64(b"Ma"), "TWE=");
    let sb = Sandbox::builder()
        .cluster("e2e-keys")
        .access_key(ACCESS_KEY_ID, ACCESS_KEY_SECRET)
        .emulator_profile(PROFILE)
        .kubelet_serving_cert()
        // Everything at trace except the Wasm compiler's own internals (cranelift at trace
        // is millions of lines about machine code, and never sees a key): the daemon, kube,
        // hyper, reqwest, rustls, the ECI client.
        .env(
            "VNODE_LOG",
            "trace,cranelift_codegen=info,cranelift_frontend=info,cranelift_entity=info,\
             regalloc2=info,wasmtime_cranelift=info,wasmtime_environ=info,wasmtime=info",
        )
        .env("RUST_LOG", "trace")
        .daemon_args(&["--log-format", "json"])
        .capture_daemon_logs()
        .start()?;

    // Success, under injected ECI errors (retried): the logger runs; logs and exec work.
    sb.apply("logger.yaml", &pod("logger", "", "e2e/logger"))?;
    wait_for("logger Running", Duration::from_secs(60), || {
        Ok((sb.pod("logger")?["status"]["phase"] == "Running").then_some(()))
    })?;
    wait_for("kubectl logs", Duration::from_secs(30), || {
        let (code, out, _) = sb.kubectl(&["logs", "logger"])?;
        Ok((code == 0 && out.starts_with("ready\n")).then_some(()))
    })?;
    wait_for("kubectl exec", Duration::from_secs(30), || {
        let (code, out, _) = sb.kubectl(&["exec", "logger", "--", "echo", "hi"])?;
        Ok((code == 0 && out == "hi\n").then_some(()))
    })?;
    // A placement refusal (zone-spread refuses a malformed spot-duration annotation) with
    // its event.
    sb.apply(
        "refused.yaml",
        &pod("nope", "k8s.aliyun.com/eci-spot-duration: \"7\"", "nginx"),
    )?;
    wait_for("the refusal event", Duration::from_secs(30), || {
        let events = sb.events()?;
        Ok(events
            .iter()
            .any(|e| {
                (e["regarding"]["name"] == "nope" || e["involvedObject"]["name"] == "nope")
                    && e["reason"].as_str().is_some_and(|r| r.contains("Refused"))
            })
            .then_some(()))
    })?;
    // More pods, so the error paths (retries, events) have been taken for sure.
    for i in 0..10 {
        sb.apply(
            &format!("web-{i}.yaml"),
            &pod(&format!("web-{i}"), "", "nginx"),
        )?;
    }
    wait_for("every web pod Running", Duration::from_secs(60), || {
        let running = sb
            .pods()?
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count();
        Ok((running == 11).then_some(()))
    })?;
    let (code, metrics) = http_get(&sb.daemon()?.url, "/metrics")?;
    ensure!(code == 200, "{metrics}");
    ensure!(
        metrics.contains("eci_pod_calls"),
        "the ECI call metrics are there: {metrics}"
    );

    // Now look everywhere.
    let logs = sb.daemon_logs()?;
    ensure!(
        logs.lines().count() > 100 && logs.contains("\"level\":\"TRACE\""),
        "the daemon logged at trace level as JSON ({} lines)",
        logs.lines().count()
    );
    // The injected errors really happened, and the ECI client retried them.
    ensure!(
        logs.contains("retrying ECI call"),
        "no ECI call was retried: the fault injection did not bite"
    );
    assert_absent("the daemon's stderr", &logs)?;
    let stdout: Vec<String> = sb.daemon()?.stdout.try_iter().collect();
    assert_absent("the daemon's stdout", &stdout.join("\n"))?;
    assert_absent("/metrics", &metrics)?;
    for (place, args) in [
        ("events", vec!["get", "events", "-A", "-o", "json"]),
        (
            "events.k8s.io",
            vec!["get", "events.v1.events.k8s.io", "-A", "-o", "json"],
        ),
        (
            "the node",
            vec!["get", "node", "virtual-kubelet", "-o", "json"],
        ),
        ("the pods", vec!["get", "pods", "-A", "-o", "json"]),
        ("leases", vec!["get", "leases", "-A", "-o", "json"]),
    ] {
        let out = sb.kubectl_ok(&args).with_context(|| place.to_string())?;
        assert_absent(place, &out)?;
    }
    let described = sb.kubectl_ok(&["describe", "node", "virtual-kubelet"])?;
    assert_absent("kubectl describe node", &described)?;
    Ok(())
}
