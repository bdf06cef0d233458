//! `vnode plugin check` and `vnode plugin simulate` on real components built from `plugins/`
//! (by vnode-plugin-host's build script, into `target/plugins`).

use std::path::PathBuf;

use vnode_tests::run_vnode;

fn component(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: `cargo build -p vnode` builds the plugins",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

fn repo_file(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn check_describes_a_good_plugin() {
    let (code, stdout, stderr) =
        run_vnode(&["plugin", "check", &component("zone_spread")]).expect("runs");
    assert_eq!(code, 0, "{stderr}");
    for want in [
        "zone-spread",
        "vnode:plugin/placement-plugin",
        "contract:    vnode:plugin@0.3.0",
        "sha256:",
        "smoke test:  passed",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    let (code, stdout, stderr) = run_vnode(&[
        "plugin",
        "check",
        "--output",
        "json",
        &component("translator_default"),
    ])
    .expect("runs");
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(v["kind"], "translator");
    assert_eq!(v["sha256"].as_str().map(str::len), Some(64));
}

#[test]
fn check_refuses_bad_files_with_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "just some text").expect("write");
    let (code, _, stderr) =
        run_vnode(&["plugin", "check", text.to_str().expect("utf8")]).expect("runs");
    assert_ne!(code, 0);
    assert!(stderr.contains("not a WebAssembly file"), "{stderr}");

    let (code, _, stderr) = run_vnode(&[
        "plugin",
        "check",
        "--kind",
        "placement",
        &component("translator_default"),
    ])
    .expect("runs");
    assert_ne!(code, 0);
    assert!(stderr.contains("wrong plugin world"), "{stderr}");

    let (code, _, stderr) = run_vnode(&[
        "plugin",
        "check",
        "--config",
        "colour = blue",
        &component("zone_spread"),
    ])
    .expect("runs");
    assert_ne!(code, 0);
    assert!(
        stderr.contains("refused its configuration") && stderr.contains("colour"),
        "{stderr}"
    );

    let (code, _, stderr) = run_vnode(&["plugin", "check", "/nonexistent/x.wasm"]).expect("runs");
    assert_ne!(code, 0);
    assert!(stderr.contains("/nonexistent/x.wasm"), "{stderr}");
}

#[test]
fn simulate_prints_placement_decisions() {
    let pods = repo_file("examples/pods/mixed.yaml");
    let (code, stdout, stderr) = run_vnode(&[
        "plugin",
        "simulate",
        "--plugin",
        &component("cost_aware"),
        "--pods",
        &pods,
        "--config",
        "refuse-namespaces = payments",
        "--output",
        "json",
    ])
    .expect("runs");
    assert_eq!(code, 0, "{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let rows = rows.as_array().expect("array");
    assert_eq!(rows.len(), 5);
    let by_pod = |name: &str| {
        rows.iter()
            .find(|r| r["pod"] == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(
        by_pod("shop/web-7d4b9c6f5-x2x9k")["decision"]["accept"]["attempts"][0]["spot"],
        "NoSpot"
    );
    assert_eq!(
        by_pod("batch/report-28841-abcde")["decision"]["accept"]["attempts"][0]["spot"],
        "SpotAsPriceGo"
    );
    assert_eq!(
        by_pod("db/postgres-0")["decision"]["accept"]["attempts"][0]["spot"],
        "NoSpot"
    );
    assert!(
        by_pod("payments/legacy-api")["decision"]["refuse"]
            .as_str()
            .expect("refused")
            .contains("payments")
    );
    assert!(
        by_pod("shop/web-7d4b9c6f5-x2x9k")["plugin"]
            .as_str()
            .expect("identity")
            .starts_with("cost-aware")
    );

    // zone-spread, as a table: the pinned pod stays pinned; others spread over zones.
    let (code, stdout, stderr) = run_vnode(&[
        "plugin",
        "simulate",
        "--plugin",
        &component("zone_spread"),
        "--pods",
        &pods,
    ])
    .expect("runs");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("POD"), "{stdout}");
    assert!(
        stdout.contains("ml/gpu-infer") && stdout.contains("pinned"),
        "{stdout}"
    );
    for zone in ["cn-hangzhou-h", "cn-hangzhou-i", "cn-hangzhou-j"] {
        assert!(stdout.contains(zone), "pods spread over {zone}:\n{stdout}");
    }
}

#[test]
fn simulate_translates_with_a_translator() {
    let pods = repo_file("examples/pods/mixed.yaml");
    let (code, stdout, stderr) = run_vnode(&[
        "plugin",
        "simulate",
        "--plugin",
        &component("zone_spread"),
        "--translator",
        &component("translator_default"),
        "--pods",
        &pods,
        "--output",
        "json",
    ])
    .expect("runs");
    assert_eq!(code, 0, "{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let web = rows
        .as_array()
        .expect("array")
        .iter()
        .find(|r| r["pod"] == "shop/web-7d4b9c6f5-x2x9k")
        .expect("web");
    let t = &web["translation"];
    assert!(
        t["plugin"]
            .as_str()
            .expect("identity")
            .starts_with("translator-default"),
        "{t}"
    );
    assert_eq!(
        t["containers"][0]["image"], "registry.cn-hangzhou.aliyuncs.com/shop/web:1.42.0",
        "{t}"
    );
    assert_eq!(
        t["zone"], web["decision"]["accept"]["attempts"][0]["zone"],
        "{t}"
    );
}

#[test]
fn simulate_rejects_non_pod_documents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pods = dir.path().join("cm.yaml");
    std::fs::write(
        &pods,
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n",
    )
    .expect("write");
    let (code, _, stderr) = run_vnode(&[
        "plugin",
        "simulate",
        "--plugin",
        &component("zone_spread"),
        "--pods",
        pods.to_str().expect("utf8"),
    ])
    .expect("runs");
    assert_ne!(code, 0);
    assert!(stderr.contains("Service, not a Pod"), "{stderr}");
}

#[test]
fn simulate_against_compares_two_policies() {
    let pods = repo_file("examples/pods/mixed.yaml");
    let run = |output: &str| {
        run_vnode(&[
            "plugin",
            "simulate",
            "--plugin",
            &component("zone_spread"),
            "--against",
            &component("cost_aware"),
            "--against-config",
            "refuse-namespaces = payments",
            "--pods",
            &pods,
            "--output",
            output,
        ])
        .expect("runs")
    };
    let (code, stdout, stderr) = run("json");
    assert_eq!(code, 0, "{stderr}");
    let c: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(c["pods"], 5);
    assert!(
        c["a"]["plugin"]
            .as_str()
            .expect("a")
            .starts_with("zone-spread")
    );
    assert!(
        c["b"]["plugin"]
            .as_str()
            .expect("b")
            .starts_with("cost-aware")
    );
    // cost-aware refuses the payments namespace; zone-spread accepts everything.
    assert_eq!(
        (c["a"]["accepted"].as_u64(), c["a"]["refused"].as_u64()),
        (Some(5), Some(0))
    );
    assert_eq!(
        (c["b"]["accepted"].as_u64(), c["b"]["refused"].as_u64()),
        (Some(4), Some(1))
    );
    let diff = |pod: &str| {
        c["differences"]
            .as_array()
            .expect("differences")
            .iter()
            .find(|d| d["pod"] == pod)
            .unwrap_or_else(|| panic!("{pod} not listed as different: {c}"))
            .clone()
    };
    assert_eq!(diff("payments/legacy-api")["differs"][0], "decision");
    let batch = diff("batch/report-28841-abcde");
    assert!(
        batch["differs"]
            .as_array()
            .expect("fields")
            .iter()
            .any(|f| f == "spot"),
        "{batch}"
    );
    assert_eq!(batch["b"]["accept"]["attempts"][0]["spot"], "SpotAsPriceGo");
    // Spot is cheaper, and B refuses one pod: its estimate must be lower, and both positive.
    let price = |side: &str| c[side]["hourly_price_usd"].as_f64().expect("price");
    assert!(price("b") > 0.0 && price("b") < price("a"), "{c}");
    assert!(c["b"]["spot"].as_u64() > c["a"]["spot"].as_u64(), "{c}");
    assert_eq!(
        c["a"]["zones"]
            .as_object()
            .expect("zones")
            .values()
            .filter_map(|v| v.as_u64())
            .sum::<u64>(),
        5
    );

    // The same comparison as a table.
    let (code, stdout, stderr) = run("table");
    assert_eq!(code, 0, "{stderr}");
    for want in [
        "A = zone-spread",
        "B = cost-aware",
        "differs in:",
        "spot share",
        "est. USD/hour",
    ] {
        assert!(stdout.contains(want), "missing {want:?}:\n{stdout}");
    }

    // A policy compared with itself agrees on every pod.
    let (code, stdout, stderr) = run_vnode(&[
        "plugin",
        "simulate",
        "--plugin",
        &component("zone_spread"),
        "--against",
        &component("zone_spread"),
        "--pods",
        &pods,
        "--output",
        "json",
    ])
    .expect("runs");
    assert_eq!(code, 0, "{stderr}");
    let c: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(c["different"], 0, "{c}");
}

#[test]
fn check_prints_the_contract_version_and_refuses_unknown_ones() {
    // Every supported version loads and says which it is.
    for (fixture, version) in [
        ("contract_v0_1_0", "0.1.0"),
        ("contract_v0_2_0", "0.2.0"),
        ("contract_v0_2_0_translator", "0.2.0"),
        ("contract_v0_3_0", "0.3.0"),
        ("contract_v0_3_0_translator", "0.3.0"),
    ] {
        let (code, stdout, stderr) =
            run_vnode(&["plugin", "check", &component(fixture)]).expect("runs");
        assert_eq!(code, 0, "{fixture}: {stderr}");
        assert!(
            stdout.contains(&format!("contract:    vnode:plugin@{version}")),
            "{fixture}: {stdout}"
        );
    }
    let (code, stdout, stderr) = run_vnode(&[
        "plugin",
        "check",
        "--output",
        "json",
        &component("contract_v0_1_0"),
    ])
    .expect("runs");
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(v["contract"], "vnode:plugin@0.1.0");

    let (code, _, stderr) =
        run_vnode(&["plugin", "check", &component("contract_future")]).expect("runs");
    assert_ne!(code, 0);
    assert!(
        stderr.contains("vnode:plugin@0.9.0") && stderr.contains("0.3.0, 0.2.0, 0.1.0"),
        "{stderr}"
    );
}
