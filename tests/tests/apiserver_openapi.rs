//! `/openapi/v2` and `/openapi/v3`: enough for kubectl's client-side validation of `kind: List`
//! manifests, with unknown fields still refused by the server.

use std::time::Duration;

use anyhow::{Result, ensure};
use vnode_tests::{VnodeProcess, kubectl};

#[test]
fn list_manifests_apply_with_validation_on() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path().join("api");
    let ds = d.to_string_lossy().to_string();
    let _api = VnodeProcess::start(
        &["apiserver", "--listen", "127.0.0.1:0", "--dir", &ds],
        Duration::from_secs(30),
    )?;
    let kc = d.join("kubeconfig");
    let list = dir.path().join("list.yaml");
    std::fs::write(
        &list,
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n  data: {x: \"1\"}\n- apiVersion: v1\n  kind: ServiceAccount\n  metadata: {name: b}\n",
    )?;
    let (code, out, err) = kubectl(
        &kc,
        &["apply", "--validate=strict", "-f", &list.to_string_lossy()],
    )?;
    ensure!(code == 0, "{out}{err}");
    ensure!(
        out.contains("configmap/a created") && out.contains("serviceaccount/b created"),
        "{out}"
    );

    // Validation still happens, on the server.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: c}\n  dataa: {x: \"1\"}\n",
    )?;
    let (code, out, err) = kubectl(
        &kc,
        &["apply", "--validate=strict", "-f", &bad.to_string_lossy()],
    )?;
    ensure!(
        code != 0 && err.contains("unknown field \"dataa\""),
        "{out}{err}"
    );

    // The JSON form is a Swagger 2.0 document.
    let (code, out, err) = kubectl(&kc, &["get", "--raw", "/openapi/v2"])?;
    ensure!(code == 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out)?;
    ensure!(doc["swagger"] == "2.0", "{doc}");
    Ok(())
}
