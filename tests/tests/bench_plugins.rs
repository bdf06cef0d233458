//! `vnode bench plugins` end to end at a small size: the report must have every row, each with
//! four plausible latencies (min ≤ p50 ≤ p95 ≤ p99, above zero, under a second), the paced
//! rows must say the pause they got (never shorter than asked), `--steps` must split the
//! calls into the host's steps, the corpus must reach the plugins and the hot reload must
//! serve. Nothing here judges the figures against the targets: a loaded machine may miss
//! them, a broken bench may not.

use anyhow::{Context, Result};
use vnode_tests::run_vnode;

/// The rows the report prints, in order (the label up to where the figures start).
const ROWS: &[&str] = &[
    "CORPUS, DAEMON PATH: convert + place + translate (paced)",
    "  of which Pod → contract types (host, vnode-mapping)",
    "  of which place + translate (THE PLUGIN DECISIONS)",
    "  of which PluginSlot::place",
    "  of which PluginSlot::translate",
    "corpus, daemon path back-to-back (no pause)",
    "  of which place + translate",
    "floor: do-nothing plugins, place + translate (paced)",
    "floor: do-nothing plugins, back-to-back",
    "plugins' code natively: decode + decide + encode (paced)",
    "plugins' code natively, back-to-back",
    "sample pod (2 containers + init), daemon path (paced)",
    "  of which Pod → contract types",
    "  of which place + translate",
    "placement alone: PluginSlot::place (paced)",
    "translation alone: PluginSlot::translate (paced)",
    "instantiate placement (store + instance, no call)",
    "instantiate translator (store + instance, no call)",
    "placement call on a prepared instance",
    "translation call on a prepared instance",
    "placement steps inline: new store (host state + WASI)",
    "placement steps inline: instantiate",
    "placement steps inline: call (lower + run + lift)",
    "placement steps inline: drop store (free + slot reset)",
    "place + translate, instantiate inline (no warm pool)",
    "placement logic compiled natively (zone-spread)",
];

/// The four figures (µs) of a row line: `label   1.0 µs   2.0 µs   3.0 µs   4.0 µs  note`.
fn figures(line: &str, label: &str) -> Result<[f64; 4]> {
    let rest = line
        .strip_prefix(label)
        .with_context(|| format!("{line:?} does not start with {label:?}"))?;
    let values: Vec<f64> = rest
        .split("µs")
        .take(4)
        .map(|v| v.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("row {label:?}: four figures in µs expected: {rest:?}"))?;
    values
        .try_into()
        .map_err(|v| anyhow::anyhow!("row {label:?}: four figures expected, got {v:?}"))
}

#[test]
fn bench_plugins_small_run_reports_every_row() -> Result<()> {
    let (code, stdout, stderr) = run_vnode(&[
        "bench",
        "plugins",
        "--iterations",
        "100",
        "--pace-us",
        "100",
        "--reload-rounds",
        "1",
        "--steps",
    ])?;
    assert_eq!(
        code, 0,
        "bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    // Rows appear in order, each exactly where the previous one left off.
    let mut lines = stdout.lines();
    for label in ROWS {
        let line = lines
            .by_ref()
            .find(|l| l.starts_with(label))
            .with_context(|| format!("row {label:?} missing (or out of order):\n{stdout}"))?;
        let [min, p50, p95, p99] = figures(line, label)?;
        assert!(
            min >= 0.0 && p50 > 0.0 && min <= p50 && p50 <= p95 && p95 <= p99 && p99 < 1_000_000.0,
            "row {label:?}: implausible figures {min} / {p50} / {p95} / {p99} µs:\n{stdout}"
        );
    }

    // Every paced row says the pause it was measured with, and a sleep is never shorter than
    // the 100 µs asked for.
    for label in ROWS.iter().filter(|l| l.contains("(paced)")) {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(label))
            .with_context(|| format!("row {label:?} missing"))?;
        let pause: f64 = line
            .split_once("pause between calls: p50 ")
            .and_then(|(_, rest)| rest.split(" µs").next())
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("no measured pause in {line:?}"))?;
        assert!(
            (100.0..1_000_000.0).contains(&pause),
            "{label}: pause p50 {pause} µs"
        );
    }

    // `--steps` splits the paced corpus's calls: every step has a line, the steps every
    // 0.3.0 call goes through have figures for both kinds, p50 ≤ p99.
    let steps_at = stdout
        .find("  host steps (--steps")
        .with_context(|| format!("no step table:\n{stdout}"))?;
    let table = &stdout[steps_at..];
    for label in [
        "enter (version, permit, inline or not)",
        "take a prepared instance",
        "arm the deadline (call clock)",
        "encode the input (host)",
        "Wasm call (lower + run + lift)",
        "decode the answer (host)",
        "note call time and dropped logs",
        "retire the spent store",
        "check the answer's limits",
        "return (free the inputs, permit)",
        "all steps (one call)",
    ] {
        let line = table
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .with_context(|| format!("step {label:?} missing:\n{table}"))?;
        let values: Vec<f64> = line[line.find(label).unwrap_or(0) + label.len()..]
            .split("µs")
            .take(4)
            .map(|v| v.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .with_context(|| format!("step {label:?}: four figures expected: {line:?}"))?;
        assert!(
            values.len() == 4
                && values[0] >= 0.0
                && values[0] <= values[1]
                && values[2] >= 0.0
                && values[2] <= values[3]
                && values[1] < 1_000_000.0
                && values[3] < 1_000_000.0,
            "step {label:?}: implausible {values:?}"
        );
    }

    // The corpus reached the plugins (the golden corpus has 40-odd pods).
    let corpus = stdout
        .lines()
        .find(|l| l.starts_with("golden corpus "))
        .context("corpus line missing")?;
    let reached: usize = corpus
        .split(": ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no pod count in {corpus:?}"))?;
    assert!(reached >= 30, "{corpus}");

    // The verdicts are printed (met or not: timings are not asserted).
    assert!(
        stdout.matches("target ≤ 50.0 µs p99: ").count() >= 3,
        "verdicts missing:\n{stdout}"
    );
    // The warm pool's diagnostics print.
    assert!(
        stdout.contains("warm pool misses so far"),
        "warm-pool line missing:\n{stdout}"
    );
    // The hot reload served the new version.
    let reload = stdout
        .lines()
        .find(|l| l.starts_with("file write → new version serving (1 rounds"))
        .with_context(|| format!("reload line missing:\n{stdout}"))?;
    assert!(reload.contains("p50 "), "{reload}");
    assert!(stdout.contains("load average at end: "), "{stdout}");
    Ok(())
}

/// A profile phase loops, counts its rounds and reports CPU per round; an unknown phase is an
/// error, not an empty report.
#[test]
fn bench_plugins_profile_phases_run_and_unknown_ones_fail() -> Result<()> {
    let (code, stdout, stderr) = run_vnode(&[
        "bench",
        "plugins",
        "--profile",
        "prepared-translate",
        "--profile-seconds",
        "1",
    ])?;
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("prepared-translate: "))
        .with_context(|| format!("no rounds line:\n{stdout}"))?;
    let rounds: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no round count in {line:?}"))?;
    assert!(rounds >= 64, "{line}");
    assert!(stdout.contains("CPU per round: "), "{stdout}");

    let (code, _, stderr) = run_vnode(&["bench", "plugins", "--profile", "no-such-phase"])?;
    assert_ne!(code, 0);
    assert!(stderr.contains("unknown --profile phase"), "{stderr}");
    Ok(())
}
