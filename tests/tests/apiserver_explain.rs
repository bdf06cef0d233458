//! `/openapi/v3` with schemas, driven by the real `kubectl`: `kubectl explain` for built-in
//! kinds and for a CRD's kind (following the CRD when it changes), the index's hashed
//! document URLs, and client-side `apply` computing its strategic merge patch from the
//! published patch strategies (a removed env var is removed, not kept).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use vnode_tests::{Sandbox, wait_for};

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        description: A widget of the explain test.
        properties:
          spec:
            type: object
            description: What the widget should be.
            required: [size]
            properties:
              size:
                type: integer
                description: How big the widget is.
              color:
                type: string
                enum: [red, green, blue]
"#;

fn deployment(env: &[(&str, &str)]) -> String {
    let env: String = env
        .iter()
        .map(|(k, v)| format!("        - name: {k}\n          value: \"{v}\"\n"))
        .collect();
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: 1
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: web
        image: nginx
        env:
{env}"#
    )
}

#[test]
fn kubectl_explain_reads_openapi_v3_schemas() -> Result<()> {
    let sb = Sandbox::builder().apiserver_only().start()?;

    let pods = sb.kubectl_ok(&["explain", "pods"])?;
    for want in [
        "KIND:       Pod",
        "VERSION:    v1",
        "Pod is a collection of containers",
        "FIELDS:",
        "spec\t<PodSpec>",
        "metadata\t<ObjectMeta>",
    ] {
        ensure!(pods.contains(want), "explain pods lacks {want:?}:\n{pods}");
    }
    ensure!(
        !pods.contains("-required-"),
        "Pod has no required fields upstream:\n{pods}"
    );

    let containers = sb.kubectl_ok(&["explain", "pod.spec.containers"])?;
    for want in [
        "FIELD: containers <[]Container>",
        "image\t<string>",
        "name\t<string> -required-",
        "env\t<[]EnvVar>",
    ] {
        ensure!(
            containers.contains(want),
            "explain pod.spec.containers lacks {want:?}:\n{containers}"
        );
    }

    let deploy = sb.kubectl_ok(&["explain", "deployment.spec"])?;
    for want in [
        "GROUP:      apps",
        "KIND:       Deployment",
        "FIELD: spec <DeploymentSpec>",
        "replicas\t<integer>",
        "selector\t<LabelSelector> -required-",
    ] {
        ensure!(
            deploy.contains(want),
            "explain deployment.spec lacks {want:?}:\n{deploy}"
        );
    }

    // An unknown field is an error naming it, as upstream.
    let (code, out, err) = sb.kubectl(&["explain", "pod.spec.nosuchfield"])?;
    ensure!(
        code != 0 && err.contains("field \"nosuchfield\" does not exist"),
        "{code} {out}{err}"
    );

    // A CRD's kind, from its openAPIV3Schema.
    let crd = sb.dir.path().join("crd.yaml");
    std::fs::write(&crd, CRD)?;
    let crd_path = crd.to_string_lossy().into_owned();
    sb.kubectl_ok(&["apply", "-f", &crd_path])?;
    sb.kubectl_ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=60s",
        "crd/widgets.example.com",
    ])?;
    let widget = sb.kubectl_ok(&["explain", "widgets.spec"])?;
    for want in [
        "GROUP:      example.com",
        "KIND:       Widget",
        "What the widget should be.",
        "size\t<integer> -required-",
        "How big the widget is.",
        "color\t<string>",
        "enum: red, green, blue",
    ] {
        ensure!(
            widget.contains(want),
            "explain widgets.spec lacks {want:?}:\n{widget}"
        );
    }
    let top = sb.kubectl_ok(&["explain", "widget"])?;
    ensure!(
        top.contains("A widget of the explain test.") && top.contains("metadata\t<ObjectMeta>"),
        "{top}"
    );

    // The document follows the CRD: a new field shows up under a new hash.
    let index_hash = |path: &str| -> Result<String> {
        let index: serde_json::Value =
            serde_json::from_str(&sb.kubectl_ok(&["get", "--raw", "/openapi/v3"])?)?;
        let url = index["paths"][path]["serverRelativeURL"]
            .as_str()
            .with_context(|| format!("{path} not in the index: {index}"))?
            .to_string();
        let hash = url
            .split_once("?hash=")
            .map(|(_, h)| h.to_string())
            .with_context(|| format!("no hash in {url}"))?;
        ensure!(
            hash.len() == 128 && hash.chars().all(|c| c.is_ascii_hexdigit()),
            "{url}"
        );
        Ok(hash)
    };
    let before = index_hash("apis/example.com/v1")?;
    let core_before = index_hash("api/v1")?;
    std::fs::write(
        &crd,
        CRD.replace(
            "              color:\n",
            "              shape:\n                type: string\n                description: The widget's outline.\n              color:\n",
        ),
    )?;
    sb.kubectl_ok(&["apply", "-f", &crd_path])?;
    let after = wait_for(
        "the example.com/v1 document to change",
        Duration::from_secs(30),
        || {
            let h = index_hash("apis/example.com/v1")?;
            Ok((h != before).then_some(h))
        },
    )?;
    ensure!(
        index_hash("api/v1")? == core_before,
        "core/v1 changed with a CRD"
    );
    let widget = sb.kubectl_ok(&["explain", "widgets.spec.shape"])?;
    ensure!(
        widget.contains("FIELD: shape <string>") && widget.contains("The widget's outline."),
        "{widget}"
    );
    // A stale hash is redirected to the current document; the current one is served.
    let stale = sb.kubectl_ok(&[
        "get",
        "--raw",
        &format!("/openapi/v3/apis/example.com/v1?hash={before}"),
    ])?;
    let current = sb.kubectl_ok(&[
        "get",
        "--raw",
        &format!("/openapi/v3/apis/example.com/v1?hash={after}"),
    ])?;
    ensure!(
        stale == current && current.contains("com.example.v1.Widget"),
        "stale and current documents differ"
    );
    Ok(())
}

#[test]
fn client_side_apply_uses_published_merge_keys() -> Result<()> {
    let sb = Sandbox::builder().apiserver_only().start()?;
    let file = sb.dir.path().join("deploy.yaml");
    let path = file.to_string_lossy().into_owned();
    std::fs::write(&file, deployment(&[("A", "1"), ("B", "2")]))?;
    sb.kubectl_ok(&["apply", "--validate=strict", "-f", &path])?;
    // B is dropped and A changed: with `env` merged by `name` (the published patch
    // strategy), kubectl sends a delete directive for B. Without it the patch would carry
    // the new list and the server's merge by name would keep B.
    std::fs::write(&file, deployment(&[("A", "3")]))?;
    sb.kubectl_ok(&["apply", "--validate=strict", "-f", &path])?;
    let d = sb.get_json(&["get", "deployment", "web"])?;
    let env = &d["spec"]["template"]["spec"]["containers"][0]["env"];
    ensure!(
        env == &serde_json::json!([{ "name": "A", "value": "3" }]),
        "env after the second apply: {env}"
    );
    // Unknown fields are still refused (validation stays on the server).
    std::fs::write(
        &file,
        deployment(&[("A", "3")]).replace("  replicas: 1\n", "  replicas: 1\n  replicaz: 2\n"),
    )?;
    let (code, out, err) = sb.kubectl(&["apply", "--validate=strict", "-f", &path])?;
    ensure!(
        code != 0 && err.contains("unknown field \"spec.replicaz\""),
        "{code} {out}{err}"
    );
    Ok(())
}
