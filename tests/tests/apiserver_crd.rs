//! CustomResourceDefinitions with the real `kubectl` against `vnode apiserver`: a CRD is
//! established, its custom objects are served (tables with printer columns, YAML, merge
//! and JSON patches, the status and scale subresources, selectors, schema validation and
//! pruning), and deleting the CRD removes its objects and its resource.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use vnode_tests::Sandbox;

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
    shortNames: [wd]
    categories: [all, toys]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
    additionalPrinterColumns:
    - name: Size
      type: integer
      jsonPath: .spec.size
    - name: Color
      type: string
      jsonPath: .spec.color
    - name: Ready
      type: string
      jsonPath: .status.conditions[?(@.type=="Ready")].status
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size:
                type: integer
                minimum: 1
                maximum: 10
              color:
                type: string
                enum: [red, green, blue]
                default: red
              replicas:
                type: integer
              config:
                type: object
                x-kubernetes-preserve-unknown-fields: true
          status:
            type: object
            properties:
              replicas:
                type: integer
              conditions:
                type: array
                items:
                  type: object
                  properties:
                    type: {type: string}
                    status: {type: string}
"#;

const CLUSTER_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.org
spec:
  group: example.org
  scope: Cluster
  names:
    plural: gadgets
    kind: Gadget
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

const WIDGET: &str = r#"
apiVersion: example.com/v1
kind: Widget
metadata:
  name: sprocket
  namespace: default
  labels:
    tier: gold
spec:
  size: 3
  replicas: 1
  config:
    anything: [1, 2]
"#;

const BAD_WIDGET: &str = r#"
apiVersion: example.com/v1
kind: Widget
metadata:
  name: broken
  namespace: default
spec:
  size: 42
  color: purple
"#;

const UNKNOWN_FIELD_WIDGET: &str = r#"
apiVersion: example.com/v1
kind: Widget
metadata:
  name: extra
  namespace: default
spec:
  size: 2
  bogus: true
"#;

#[test]
fn crd_lifecycle_with_kubectl() -> Result<()> {
    let sb = Sandbox::builder().apiserver_only().start()?;
    let write = |name: &str, text: &str| -> Result<String> {
        let p = sb.dir.path().join(name);
        std::fs::write(&p, text)?;
        Ok(p.to_string_lossy().into_owned())
    };
    let crd = write("crd.yaml", CRD)?;
    let apply_crd_and_wait = || -> Result<()> {
        sb.kubectl_ok(&["apply", "-f", &crd])?;
        sb.kubectl_ok(&[
            "wait",
            "--for",
            "condition=established",
            "--timeout=60s",
            "crd/widgets.example.com",
        ])?;
        Ok(())
    };
    apply_crd_and_wait()?;
    let crd_obj = sb.get_json(&["get", "crd", "widgets.example.com"])?;
    let conds = crd_obj["status"]["conditions"]
        .as_array()
        .context("conditions")?;
    ensure!(
        conds
            .iter()
            .any(|c| c["type"] == "NamesAccepted" && c["status"] == "True"),
        "NamesAccepted: {conds:?}"
    );
    ensure!(
        crd_obj["status"]["acceptedNames"]["listKind"] == "WidgetList",
        "acceptedNames: {}",
        crd_obj["status"]["acceptedNames"]
    );

    // Discovery lists it, with its short name and categories.
    let resources = sb.kubectl_ok(&["api-resources", "--api-group=example.com"])?;
    ensure!(
        resources.contains("widgets") && resources.contains("wd") && resources.contains("Widget"),
        "api-resources: {resources}"
    );

    let widget = write("widget.yaml", WIDGET)?;
    sb.kubectl_ok(&["apply", "-f", &widget])?;

    // Table with the printer columns (the schema default filled in `color`).
    let table = sb.kubectl_ok(&["get", "widgets"])?;
    let header = table.lines().next().unwrap_or("");
    for col in ["NAME", "SIZE", "COLOR", "READY", "AGE"] {
        ensure!(header.contains(col), "header lacks {col}: {table}");
    }
    let row = table
        .lines()
        .find(|l| l.starts_with("sprocket"))
        .with_context(|| format!("no sprocket row: {table}"))?;
    let cells: Vec<&str> = row.split_whitespace().collect();
    ensure!(
        // READY has no value yet: upstream sends a null cell, which kubectl leaves blank.
        cells.get(1) == Some(&"3") && cells.get(2) == Some(&"red") && cells.len() == 4,
        "row: {row}"
    );
    // Short name, category and singular all resolve.
    ensure!(sb.kubectl_ok(&["get", "wd"])?.contains("sprocket"));
    ensure!(sb.kubectl_ok(&["get", "toys"])?.contains("sprocket"));
    ensure!(
        sb.kubectl_ok(&["get", "widget", "sprocket", "-o", "name"])?
            .trim()
            == "widget.example.com/sprocket"
    );

    // -o yaml: pruned nothing it declared, kept the preserved subtree.
    let yaml = sb.kubectl_ok(&["get", "widget", "sprocket", "-o", "yaml"])?;
    ensure!(
        yaml.contains("apiVersion: example.com/v1")
            && yaml.contains("kind: Widget")
            && yaml.contains("anything:")
            && yaml.contains("color: red"),
        "yaml: {yaml}"
    );

    // Selectors.
    ensure!(
        sb.kubectl_ok(&["get", "widgets", "-l", "tier=gold", "-o", "name"])?
            .contains("sprocket")
    );
    ensure!(
        sb.kubectl_ok(&["get", "widgets", "-l", "tier=silver", "-o", "name"])?
            .trim()
            .is_empty()
    );
    ensure!(
        sb.kubectl_ok(&[
            "get",
            "widgets",
            "--field-selector",
            "metadata.name=sprocket",
            "-o",
            "name"
        ])?
        .contains("sprocket")
    );

    // Merge and JSON patches; a strategic merge patch is refused as upstream does.
    sb.kubectl_ok(&[
        "patch",
        "widget",
        "sprocket",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":5}}"#,
    ])?;
    sb.kubectl_ok(&[
        "patch",
        "widget",
        "sprocket",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/color","value":"blue"}]"#,
    ])?;
    let w = sb.get_json(&["get", "widget", "sprocket"])?;
    ensure!(
        w["spec"]["size"] == 5 && w["spec"]["color"] == "blue",
        "patched: {w}"
    );
    let (code, _, err) = sb.kubectl(&[
        "patch",
        "widget",
        "sprocket",
        "-p",
        r#"{"spec":{"size":6}}"#,
    ])?;
    ensure!(
        code != 0 && err.contains("UnsupportedMediaType") || err.contains("unknown format"),
        "strategic merge on a CR: {code} {err}"
    );

    // The status subresource: spec writes there are ignored, status writes land.
    sb.kubectl_ok(&[
        "patch",
        "widget",
        "sprocket",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":9},"status":{"replicas":1,"conditions":[{"type":"Ready","status":"True"}]}}"#,
    ])?;
    let w = sb.get_json(&["get", "widget", "sprocket"])?;
    ensure!(
        w["spec"]["size"] == 5 && w["status"]["replicas"] == 1,
        "after status patch: {w}"
    );
    let table = sb.kubectl_ok(&["get", "widget", "sprocket"])?;
    ensure!(table.contains("True"), "Ready column: {table}");
    // Status on the main resource is ignored.
    sb.kubectl_ok(&[
        "patch",
        "widget",
        "sprocket",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":7}}"#,
    ])?;
    ensure!(sb.get_json(&["get", "widget", "sprocket"])?["status"]["replicas"] == 1);

    // The scale subresource.
    sb.kubectl_ok(&["scale", "widget", "sprocket", "--replicas=4"])?;
    ensure!(sb.get_json(&["get", "widget", "sprocket"])?["spec"]["replicas"] == 4);

    // Schema validation: 422 with upstream's causes.
    let bad = write("bad.yaml", BAD_WIDGET)?;
    let (code, _, err) = sb.kubectl(&["apply", "-f", &bad])?;
    ensure!(code != 0, "invalid widget accepted");
    ensure!(
        err.contains("The Widget \"broken\" is invalid")
            && err.contains("spec.size: Invalid value: 42: spec.size in body should be less than or equal to 10")
            && err.contains("spec.color: Unsupported value: \"purple\": supported values: \"red\", \"green\", \"blue\""),
        "invalid widget error: {err}"
    );
    // Unknown fields: refused under kubectl's default strict validation, pruned otherwise.
    let extra = write("extra.yaml", UNKNOWN_FIELD_WIDGET)?;
    let (code, _, err) = sb.kubectl(&["apply", "-f", &extra])?;
    ensure!(
        code != 0 && err.contains("unknown field \"spec.bogus\""),
        "strict unknown field: {code} {err}"
    );
    sb.kubectl_ok(&["apply", "--validate=false", "-f", &extra])?;
    let w = sb.get_json(&["get", "widget", "extra"])?;
    ensure!(
        w["spec"].get("bogus").is_none() && w["spec"]["size"] == 2,
        "pruned: {w}"
    );

    // A cluster-scoped CRD.
    let gadgets = write("gadgets.yaml", CLUSTER_CRD)?;
    sb.kubectl_ok(&["apply", "-f", &gadgets])?;
    sb.kubectl_ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=60s",
        "crd/gadgets.example.org",
    ])?;
    let gadget = write(
        "gadget.yaml",
        "apiVersion: example.org/v1alpha1\nkind: Gadget\nmetadata:\n  name: g1\nanything:\n  goes: here\n",
    )?;
    sb.kubectl_ok(&["apply", "-f", &gadget])?;
    let g = sb.get_json(&["get", "gadget", "g1"])?;
    ensure!(
        g["anything"]["goes"] == "here" && g["metadata"].get("namespace").is_none(),
        "gadget: {g}"
    );

    // Deleting the CRD removes its objects and its resource.
    sb.kubectl_ok(&["delete", "crd", "widgets.example.com", "--timeout=60s"])?;
    let (code, out, err) = sb.kubectl(&["get", "widgets"])?;
    ensure!(
        code != 0
            && (err.contains("the server doesn't have a resource type \"widgets\"")
                || err.contains("the server could not find the requested resource")),
        "get widgets after CRD deletion: {code} {out} {err}"
    );
    let (code, _, err) = sb.kubectl(&[
        "get",
        "--raw",
        "/apis/example.com/v1/namespaces/default/widgets",
    ])?;
    ensure!(
        code != 0 && err.contains("NotFound"),
        "raw list: {code} {err}"
    );
    // Re-created, it starts empty.
    apply_crd_and_wait()?;
    vnode_tests::wait_for("widgets served again", Duration::from_secs(60), || {
        let (code, out, _) = sb.kubectl(&["get", "widgets", "-o", "name"])?;
        Ok((code == 0).then_some(out))
    })
    .and_then(|out| {
        ensure!(out.trim().is_empty(), "old widgets came back: {out}");
        Ok(())
    })?;
    Ok(())
}
