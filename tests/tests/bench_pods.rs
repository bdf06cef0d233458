//! `vnode bench pods` end to end at a small size: it starts the API server, the ECI emulator
//! and the daemon as processes, drives 20 pods through create → Running → delete, and writes
//! a report whose numbers must be sane (every pod Running, one group each, nothing left).

use anyhow::{Context, Result};
use vnode_tests::run_vnode;

/// Runs `vnode bench pods ARGS --out <temp>`, which must succeed; returns stdout and the report.
fn bench_pods(args: &[&str]) -> Result<(String, serde_json::Value)> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    let out_s = out.to_string_lossy().to_string();
    let mut all = vec!["bench", "pods", "--out", &out_s];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = run_vnode(&all)?;
    let report = std::fs::read(out.join("report.json"))
        .context("report.json written")
        .and_then(|b| Ok(serde_json::from_slice(&b)?))
        .with_context(|| format!("bench exit {code}\nstdout:\n{stdout}\nstderr:\n{stderr}"))?;
    assert_eq!(
        code, 0,
        "bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    Ok((stdout, report))
}

#[test]
fn bench_pods_small_run_reports_a_clean_lifecycle() -> Result<()> {
    let (stdout, report) = bench_pods(&[
        "--pods",
        "20",
        "--hold-secs",
        "2",
        "--status-poll",
        "1s",
        "--timeout-secs",
        "90",
    ])?;
    assert!(
        stdout.contains("target") && stdout.contains("daemon peak RSS"),
        "summary table missing:\n{stdout}"
    );
    let n = |path: &[&str]| -> f64 {
        let mut v = &report;
        for p in path {
            v = &v[*p];
        }
        v.as_f64()
            .unwrap_or_else(|| panic!("{path:?} missing or not a number in {report:#}"))
    };
    assert_eq!(n(&["pods"]), 20.0);
    assert_eq!(n(&["running"]), 20.0, "every pod Running: {report:#}");
    assert_eq!(n(&["failed"]), 0.0);
    assert_eq!(n(&["create_errors"]), 0.0);
    assert_eq!(n(&["correctness", "pods_with_exactly_one_group"]), 20.0);
    assert_eq!(n(&["correctness", "duplicate_groups"]), 0.0);
    assert_eq!(n(&["correctness", "orphan_groups_after_delete"]), 0.0);
    assert_eq!(n(&["correctness", "groups_not_matching_a_pod"]), 0.0);
    assert_eq!(n(&["correctness", "group_annotation_mismatches"]), 0.0);
    assert_eq!(n(&["correctness", "groups_per_pod"]), 1.0);
    // Latencies exist for every pod and are plausible (non-negative, under a minute).
    for key in [
        "pod_bound_to_create_container_group",
        "eci_running_to_pod_status_running",
    ] {
        assert_eq!(n(&["latency_ms", key, "samples"]), 20.0, "{key}");
        let p50 = n(&["latency_ms", key, "p50_ms"]);
        let p99 = n(&["latency_ms", key, "p99_ms"]);
        assert!(
            (-5.0..60_000.0).contains(&p50) && p50 <= p99,
            "{key}: p50 {p50} p99 {p99}"
        );
    }
    assert!(n(&["throughput", "pods_per_s_created_to_running"]) > 0.0);
    assert!(n(&["throughput", "pods_per_s_deleted_fully"]) > 0.0);
    // Costs: exactly one create and one delete per pod; the daemon really ran.
    assert_eq!(n(&["eci_calls_per_pod", "CreateContainerGroup"]), 1.0);
    assert_eq!(n(&["eci_calls_per_pod", "DeleteContainerGroup"]), 1.0);
    assert_eq!(n(&["eci_throttled"]), 0.0);
    assert!(n(&["daemon", "used_during_run", "cpu_seconds"]) > 0.0);
    assert!(n(&["daemon", "end", "peak_rss_mib"]) > 1.0);
    let writes = n(&["kubernetes_pod_writes_per_pod"]);
    assert!(
        writes >= 1.0,
        "the daemon writes at least the pod status: {writes}"
    );
    assert!(
        report["plugin_decision_latency"]
            .as_object()
            .is_some_and(|m| m.keys().any(|k| k.starts_with("placement"))
                && m.keys().any(|k| k.starts_with("translator"))),
        "plugin latency per version: {:#}",
        report["plugin_decision_latency"]
    );
    assert!(report["targets"].as_array().is_some_and(|t| t.len() >= 6));
    // The create phase as windows: every pod with an overhead is in exactly one window, the
    // CPU of all four processes is attributed, and the summary names the slowest window.
    let windows = report["create_phase_windows"]["windows"]
        .as_array()
        .unwrap_or_else(|| panic!("create_phase_windows missing: {report:#}"));
    assert!(!windows.is_empty() && windows.len() <= 600);
    let bound: f64 = windows
        .iter()
        .map(|w| w["pods_bound"].as_f64().unwrap_or(0.0))
        .sum();
    assert_eq!(bound, 20.0, "every pod in one window");
    let cpu: f64 = windows
        .iter()
        .map(|w| w["cpu_ms"]["daemon"].as_f64().unwrap_or(0.0))
        .sum();
    assert!(cpu > 0.0, "the daemon's CPU is attributed to windows");
    assert!(
        stdout.contains("the slowest, and the median window"),
        "slowest windows missing:\n{stdout}"
    );
    Ok(())
}

/// A daemon that starts with more pods bound to its node than fit one list page (the
/// watcher lists 500 at a time) works on every one of them. It once worked on only the last
/// page: keys were queued before the reflector's store held the listing.
#[test]
fn bench_pods_backlog_larger_than_a_list_page_runs_every_pod() -> Result<()> {
    let (_, report) = bench_pods(&[
        "--backlog",
        "--pods",
        "700",
        "--hold-secs",
        "1",
        "--timeout-secs",
        "180",
    ])?;
    assert_eq!(
        report["running"], 700,
        "every backlog pod Running: {}",
        report["correctness"]
    );
    assert_eq!(report["correctness"]["pods_with_exactly_one_group"], 700);
    assert_eq!(report["correctness"]["duplicate_groups"], 0);
    assert_eq!(report["correctness"]["orphan_groups_after_delete"], 0);
    Ok(())
}
