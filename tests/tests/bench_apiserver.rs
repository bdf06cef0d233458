//! `vnode bench apiserver` end to end at a small size: it runs the server as its own process,
//! every watcher must see every create (the bench fails otherwise), and the report must have
//! every row with a plausible figure. Nothing here judges the figures against a target.

use anyhow::{Context, Result};
use vnode_tests::run_vnode;

/// The rows the report prints, in order (the label up to where the figure starts).
const ROWS: &[&str] = &[
    "pod creates/s (kube-rs over TLS)",
    "create phase, s",
    "all watchers saw every create, s",
    "watch events delivered/s (all watchers)",
    "LIST of 150 pods, ms",
    "watcher lag after the last create, ms p50/max",
    "server CPU-ms per create (create phase)",
    "server CPU-ms per create incl. fan-out",
    "server RSS before, MiB",
    "server RSS with 150 pods stored, MiB",
    "server RSS growth per stored pod, KiB",
    "server RSS after the full LIST, MiB",
];

/// Rows that must be above zero.
const POSITIVE: &[&str] = &[
    "pod creates/s (kube-rs over TLS)",
    "watch events delivered/s (all watchers)",
    "server RSS with 150 pods stored, MiB",
];

#[test]
fn bench_apiserver_small_run_reports_every_row() -> Result<()> {
    let (code, stdout, stderr) = run_vnode(&[
        "bench",
        "apiserver",
        "--pods",
        "150",
        "--concurrency",
        "8",
        "--watchers",
        "3",
    ])?;
    assert_eq!(
        code, 0,
        "bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.starts_with("vnode bench apiserver (150 pods, 8 concurrent creators, 3 watchers)"),
        "{stdout}"
    );

    let mut lines = stdout.lines();
    let mut value = |label: &str| -> Result<String> {
        let line = lines
            .by_ref()
            .find(|l| l.starts_with(label))
            .with_context(|| format!("row {label:?} missing (or out of order):\n{stdout}"))?;
        Ok(line[label.len()..].trim().to_string())
    };
    for label in ROWS {
        let v = value(label)?;
        // A single figure, or `p50/max` for the watcher lag.
        for part in v.split('/') {
            let x: f64 = part
                .parse()
                .with_context(|| format!("row {label:?}: {v:?} is not a figure"))?;
            assert!(
                x.is_finite() && x >= 0.0,
                "row {label:?}: implausible {x}\n{stdout}"
            );
        }
        if POSITIVE.contains(label) {
            assert!(v.parse::<f64>()? > 0.0, "row {label:?} is {v}\n{stdout}");
        }
    }
    Ok(())
}
