//! `kubectl apply --server-side` against `vnode apiserver`: field ownership in
//! `managedFields`, conflicts between managers (409 with Kubernetes' message),
//! `--force-conflicts`, and re-applies that drop fields the manager no longer sets.

use anyhow::{Result, ensure};
use serde_json::{Value, json};
use vnode_tests::Sandbox;

fn deployment(replicas: Option<u32>, labels: &str) -> String {
    let replicas = replicas.map_or(String::new(), |r| format!("  replicas: {r}\n"));
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {{{labels}}}
spec:
{replicas}  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
"
    )
}

fn managers(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap_or("").to_string(),
                        e["operation"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn server_side_apply_owns_fields_conflicts_and_forces() -> Result<()> {
    let s = Sandbox::builder()
        .without_daemon()
        .without_emulator()
        .start()?;
    let file = s.dir.path().join("web.yaml");
    let apply = |yaml: &str, extra: &[&str]| -> Result<(i32, String, String)> {
        std::fs::write(&file, yaml)?;
        let f = file.to_string_lossy().to_string();
        let mut args = vec!["apply", "--server-side", "-f", f.as_str()];
        args.extend_from_slice(extra);
        s.kubectl(&args)
    };
    let get = || s.get_json(&["get", "deployment", "web", "--show-managed-fields"]);

    let (code, out, err) = apply(&deployment(Some(2), "app: web, tier: fe"), &[])?;
    ensure!(
        code == 0 && out.contains("serverside-applied"),
        "{out}{err}"
    );
    let d = get()?;
    ensure!(d["spec"]["replicas"] == 2, "{d}");
    ensure!(
        managers(&d) == [("kubectl".to_string(), "Apply".to_string())],
        "{d}"
    );
    let fields = &d["metadata"]["managedFields"][0]["fieldsV1"];
    ensure!(
        fields["f:spec"]["f:replicas"] == json!({})
            && fields["f:metadata"]["f:labels"]["f:tier"] == json!({})
            && fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"]["f:image"]
                == json!({}),
        "{fields}"
    );

    // Another manager applying the same value shares the field; a different value conflicts.
    let (code, out, err) = apply(&deployment(Some(5), "app: web"), &["--field-manager=ci"])?;
    ensure!(code != 0, "conflict expected: {out}");
    ensure!(
        err.contains(
            "Apply failed with 1 conflict: conflict with \"kubectl\" using apps/v1: .spec.replicas"
        ),
        "{err}"
    );
    ensure!(
        get()?["spec"]["replicas"] == 2,
        "a refused apply changes nothing"
    );

    // Forced: the value changes and `ci` now owns replicas.
    let (code, out, err) = apply(
        &deployment(Some(5), "app: web"),
        &["--field-manager=ci", "--force-conflicts"],
    )?;
    ensure!(code == 0, "{out}{err}");
    let d = get()?;
    ensure!(d["spec"]["replicas"] == 5, "{d}");
    let entries = d["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let owner_of_replicas: Vec<&str> = entries
        .iter()
        .filter(|e| e["fieldsV1"]["f:spec"]["f:replicas"].is_object())
        .filter_map(|e| e["manager"].as_str())
        .collect();
    ensure!(owner_of_replicas == ["ci"], "{d}");

    // `kubectl` re-applies without replicas and without the tier label: the label it alone
    // owned is removed; replicas (owned by `ci`) stays.
    let (code, out, err) = apply(&deployment(None, "app: web"), &[])?;
    ensure!(code == 0, "{out}{err}");
    let d = get()?;
    ensure!(
        d["metadata"]["labels"] == json!({"app": "web"}) && d["spec"]["replicas"] == 5,
        "{d}"
    );

    // Fields set by an ordinary write belong to its manager (`kubectl-create`): applying a
    // different value conflicts with it.
    s.kubectl_ok(&["create", "configmap", "cfg", "--from-literal=mode=dev"])?;
    let (code, _, err) = apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {mode: prod}\n",
        &[],
    )?;
    ensure!(
        code != 0 && err.contains("conflict with \"kubectl-create\"") && err.contains(".data.mode"),
        "{err}"
    );

    // Client-side apply keeps working next to it.
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: csa}\ndata: {a: '1'}\n",
    )?;
    let f = file.to_string_lossy().to_string();
    s.kubectl_ok(&["apply", "-f", &f])?;
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: csa}\ndata: {b: '2'}\n",
    )?;
    s.kubectl_ok(&["apply", "-f", &f])?;
    let cm = s.get_json(&["get", "configmap", "csa"])?;
    ensure!(cm["data"] == json!({"b": "2"}), "{cm}");
    Ok(())
}
