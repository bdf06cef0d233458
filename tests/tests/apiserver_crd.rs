//! CustomResourceDefinitions with the real `kubectl` against `vnode apiserver`: a CRD is
//! established, its custom objects are served (tables with printer columns, YAML, merge
//! and JSON patches, the status and scale subresources, selectors, schema validation and
//! pruning), and deleting the CRD removes its objects and its resource.

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

/// Two served versions (storage `v1`, `v2` converted with strategy `None`), a
/// `selectableFields` entry, and a pattern.
const MULTI_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: flags.example.net
spec:
  group: example.net
  scope: Namespaced
  names:
    plural: flags
    kind: Flag
  versions:
  - name: v1
    served: true
    storage: true
    selectableFields:
    - jsonPath: .spec.color
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              color: {type: string, pattern: "^[a-z]+$"}
  - name: v2
    served: true
    storage: false
    selectableFields:
    - jsonPath: .spec.color
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              color: {type: string, pattern: "^[a-z]+$"}
"#;

#[test]
fn crd_versions_selectable_fields_and_finalizers() -> Result<()> {
    let sb = Sandbox::builder().apiserver_only().start()?;
    let write = |name: &str, text: &str| -> Result<String> {
        let p = sb.dir.path().join(name);
        std::fs::write(&p, text)?;
        Ok(p.to_string_lossy().into_owned())
    };
    let crd = write("crd.yaml", MULTI_CRD)?;
    sb.kubectl_ok(&["apply", "-f", &crd])?;
    sb.kubectl_ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=60s",
        "crd/flags.example.net",
    ])?;
    let flag = |name: &str, version: &str, color: &str, finalizer: bool| {
        let fin = if finalizer {
            "  finalizers: [example.net/hold]\n"
        } else {
            ""
        };
        format!(
            "apiVersion: example.net/{version}\nkind: Flag\nmetadata:\n  name: {name}\n  namespace: default\n{fin}spec:\n  color: {color}\n"
        )
    };
    // Written through v2, stored as v1; each version reads it with its own apiVersion.
    let red = write("red.yaml", &flag("red", "v2", "red", true))?;
    sb.kubectl_ok(&["apply", "-f", &red])?;
    let blue = write("blue.yaml", &flag("blue", "v1", "blue", false))?;
    sb.kubectl_ok(&["apply", "-f", &blue])?;
    let v1 = sb.get_json(&["get", "flags.v1.example.net", "red"])?;
    let v2 = sb.get_json(&["get", "flags.v2.example.net", "red"])?;
    ensure!(
        v1["apiVersion"] == "example.net/v1" && v2["apiVersion"] == "example.net/v2",
        "v1: {v1}\nv2: {v2}"
    );
    ensure!(
        v1["spec"] == v2["spec"] && v1["metadata"]["uid"] == v2["metadata"]["uid"],
        "one object: {v1} {v2}"
    );
    let list = sb.get_json(&["get", "flags.v2.example.net"])?;
    ensure!(
        list["items"]
            .as_array()
            .is_some_and(|i| i.len() == 2 && i.iter().all(|o| o["apiVersion"] == "example.net/v2")),
        "v2 list: {list}"
    );
    // Patched through v2, still one object stored as v1.
    sb.kubectl_ok(&[
        "patch",
        "flags.v2.example.net",
        "blue",
        "--type=merge",
        "-p",
        r#"{"spec":{"color":"navy"}}"#,
    ])?;
    let raw = sb.kubectl_ok(&[
        "get",
        "--raw",
        "/apis/example.net/v1/namespaces/default/flags/blue",
    ])?;
    let stored: serde_json::Value = serde_json::from_str(&raw)?;
    ensure!(
        stored["apiVersion"] == "example.net/v1" && stored["spec"]["color"] == "navy",
        "{stored}"
    );

    // selectableFields in field selectors; undeclared fields are refused.
    let names = sb.kubectl_ok(&[
        "get",
        "flags",
        "--field-selector",
        "spec.color=navy",
        "-o",
        "name",
    ])?;
    ensure!(names.trim() == "flag.example.net/blue", "{names}");
    let (code, _, err) = sb.kubectl(&["get", "flags", "--field-selector", "spec.size=1"])?;
    ensure!(
        code != 0 && err.contains("field label not supported: spec.size"),
        "{err}"
    );

    // The schema's pattern is enforced.
    let bad = write("bad.yaml", &flag("bad", "v1", "Red1", false))?;
    let (code, _, err) = sb.kubectl(&["apply", "-f", &bad])?;
    ensure!(
        code != 0 && err.contains("spec.color in body should match '^[a-z]+$'"),
        "{err}"
    );

    // Deleting the CRD: blue (no finalizers) goes, red stays terminating, no new flags.
    sb.kubectl_ok(&["delete", "crd", "flags.example.net", "--wait=false"])?;
    let red_obj = wait_for("red to be marked deleted", Duration::from_secs(30), || {
        let o = sb.get_json(&["get", "flag", "red"])?;
        Ok(o["metadata"]["deletionTimestamp"].is_string().then_some(o))
    })?;
    ensure!(
        red_obj["metadata"]["finalizers"] == serde_json::json!(["example.net/hold"]),
        "{red_obj}"
    );
    let (code, out, _) = sb.kubectl(&["get", "flag", "blue", "-o", "name"])?;
    ensure!(code != 0, "blue survived: {out}");
    let crd_obj = sb.get_json(&["get", "crd", "flags.example.net"])?;
    ensure!(
        crd_obj["status"]["conditions"].as_array().is_some_and(|c| c
            .iter()
            .any(|c| c["type"] == "Terminating" && c["status"] == "True")),
        "{crd_obj}"
    );
    let green = write("green.yaml", &flag("green", "v1", "green", false))?;
    let (code, _, err) = sb.kubectl(&["create", "-f", &green])?;
    ensure!(
        code != 0
            && err.contains("create not allowed while custom resource definition is terminating"),
        "{err}"
    );
    // Clearing the finalizer finishes both deletions.
    sb.kubectl_ok(&[
        "patch",
        "flag",
        "red",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ])?;
    wait_for("the CRD to be gone", Duration::from_secs(30), || {
        let (code, _, _) = sb.kubectl(&["get", "crd", "flags.example.net"])?;
        Ok((code != 0).then_some(()))
    })?;
    let (code, _, err) = sb.kubectl(&[
        "get",
        "--raw",
        "/apis/example.net/v1/namespaces/default/flags",
    ])?;
    ensure!(code != 0 && err.contains("NotFound"), "{err}");
    Ok(())
}
