//! How fast the sandbox's two servers answered during a benchmark, from their own records:
//! the API server's audit log (each request's `requestReceivedTimestamp` → `stageTimestamp`)
//! and the ECI emulator's call timings (`--record-calls`, served at
//! [`vnode_eci_emulator::CALLS_PATH`]). Summarised per kind of request over a window, so a
//! benchmark of vnode shows whether the servers it drives were what limited it.
//!
//! These are the servers' handling times: from the request reaching the handler to its
//! response being built. Time spent in the connection (TLS, queued in the kernel or in
//! hyper before the handler runs, writing the answer) is not in them; the client's own
//! latency figures hold that. A watch's figure is the time to start its stream.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// One kind of request's handling time within a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerLatency {
    /// Requests answered within the window.
    pub count: u64,
    /// Median handling time, ms (nearest rank).
    pub p50_ms: f64,
    /// 99th percentile, ms (nearest rank).
    pub p99_ms: f64,
    /// Longest, ms.
    pub max_ms: f64,
}

/// A window's requests by kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// API server: `verb resource[/subresource]` (`(non-resource)` for paths such as
    /// `/version`), as `bench pods` counts requests; emulator: the action, followed by the
    /// error code for failed calls.
    pub by_request: BTreeMap<String, ServerLatency>,
    /// Audit lines that are not a record with both timestamps (a server older than the
    /// timestamps, or a torn line); they cannot be placed in the window, so they are
    /// counted over the whole file.
    pub unreadable: u64,
}

impl LatencySummary {
    /// One row per kind: `prefix key, ms p50/p99/max (n)` and its figures, for a report
    /// table.
    pub fn rows(&self, prefix: &str) -> Vec<(String, String)> {
        self.by_request
            .iter()
            .map(|(k, l)| {
                (
                    format!("{prefix} {k}, ms p50/p99/max (n)"),
                    format!(
                        "{:.2}/{:.2}/{:.2} ({})",
                        l.p50_ms, l.p99_ms, l.max_ms, l.count
                    ),
                )
            })
            .collect()
    }
}

/// The fields of an audit line read here.
#[derive(Deserialize)]
struct AuditTiming {
    verb: String,
    resource: String,
    #[serde(default)]
    subresource: String,
    #[serde(rename = "requestReceivedTimestamp")]
    received: jiff::Timestamp,
    #[serde(rename = "stageTimestamp")]
    answered: jiff::Timestamp,
}

/// How the benchmarks name a kind of API-server request: `verb resource[/subresource]`, or
/// `verb (non-resource)` for paths such as `/version`.
pub fn request_kind(verb: &str, resource: &str, subresource: &str) -> String {
    if resource.is_empty() {
        format!("{verb} (non-resource)")
    } else if subresource.is_empty() {
        format!("{verb} {resource}")
    } else {
        format!("{verb} {resource}/{subresource}")
    }
}

/// The API server's handling time per `verb resource[/subresource]`, over the requests
/// answered within `[from_us, to_us)` (microseconds since the Unix epoch), every user's.
pub fn apiserver_latency(
    audit_log: &Path,
    from_us: i64,
    to_us: i64,
) -> anyhow::Result<LatencySummary> {
    let text = std::fs::read_to_string(audit_log)
        .with_context(|| format!("reading {}", audit_log.display()))?;
    let mut unreadable = 0;
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(a) = serde_json::from_str::<AuditTiming>(line) else {
            unreadable += 1;
            continue;
        };
        let answered_us = a.answered.as_microsecond();
        if answered_us < from_us || answered_us >= to_us {
            continue;
        }
        let kind = request_kind(&a.verb, &a.resource, &a.subresource);
        samples.push((kind, answered_us - a.received.as_microsecond()));
    }
    Ok(LatencySummary {
        by_request: summarise(samples),
        unreadable,
    })
}

/// The ECI emulator's handling time per action (and error code), over the calls answered
/// within `[from_us, to_us)`.
pub fn emulator_latency(
    calls: &[vnode_eci_emulator::CallTiming],
    from_us: i64,
    to_us: i64,
) -> LatencySummary {
    let samples = calls
        .iter()
        .filter(|c| (from_us..to_us).contains(&c.answered_us))
        .map(|c| {
            let kind = if c.outcome == vnode_eci_emulator::record::OUTCOME_OK {
                c.action.clone()
            } else {
                format!("{} {}", c.action, c.outcome)
            };
            (kind, c.answered_us - c.received_us)
        });
    LatencySummary {
        by_request: summarise(samples),
        unreadable: 0,
    }
}

/// Every call the emulator at `url` recorded (it must run with `--record-calls`).
pub async fn emulator_calls(
    http: &reqwest::Client,
    url: &str,
) -> anyhow::Result<Vec<vnode_eci_emulator::CallTiming>> {
    let timings: vnode_eci_emulator::CallTimings = http
        .get(format!("{url}{}", vnode_eci_emulator::CALLS_PATH))
        .send()
        .await?
        .error_for_status()
        .context("the emulator's call timings (is it running with --record-calls?)")?
        .json()
        .await?;
    Ok(timings.calls)
}

/// Count and nearest-rank p50/p99/max per kind, from `(kind, microseconds)` samples.
fn summarise(samples: impl IntoIterator<Item = (String, i64)>) -> BTreeMap<String, ServerLatency> {
    let mut by_kind: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (kind, us) in samples {
        by_kind.entry(kind).or_default().push(us);
    }
    by_kind
        .into_iter()
        .map(|(kind, mut us)| {
            us.sort_unstable();
            let rank = |q: f64| super::nearest_rank(&us, q) as f64 / 1000.0;
            let latency = ServerLatency {
                count: us.len() as u64,
                p50_ms: rank(0.50),
                p99_ms: rank(0.99),
                max_ms: rank(1.0),
            };
            (kind, latency)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `2026-11-27T00:00:00.000000Z` plus `us` microseconds, as the server writes it.
    fn at(us: i64) -> String {
        let base = jiff::Timestamp::from_second(1_795_737_600).expect("valid");
        let t = base
            .checked_add(jiff::SignedDuration::from_micros(us))
            .expect("in range");
        t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
    }

    fn base_us() -> i64 {
        1_795_737_600 * 1_000_000
    }

    /// An audit line as the API server writes it (`ts` = `stageTimestamp`).
    fn line(verb: &str, resource: &str, sub: &str, received: i64, answered: i64) -> String {
        let (r, a) = (at(received), at(answered));
        format!(
            r#"{{"ts":"{a}","requestReceivedTimestamp":"{r}","stageTimestamp":"{a}","user":"u","groups":["g"],"verb":"{verb}","apiGroup":"","resource":"{resource}","subresource":"{sub}","namespace":"default","name":"","path":"/x","code":201}}"#
        )
    }

    #[test]
    fn audit_log_latency_per_request_kind_within_the_window() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let mut lines = Vec::new();
        // 100 creates of pods answered at 1 ms … 100 ms after they arrived.
        for i in 1..=100 {
            let received = 10_000 + i * 1_000;
            lines.push(line("create", "pods", "", received, received + i * 1_000));
        }
        lines.push(line("patch", "pods", "status", 20_000, 20_250));
        lines.push(line("get", "", "", 20_000, 20_100));
        // Answered before and at the window's end: outside it.
        lines.push(line("create", "pods", "", 0, 5_000));
        lines.push(line("delete", "pods", "", 2_000_000, 3_000_000));
        // A server without the timestamps, and a torn line.
        lines.push(r#"{"ts":"2026-11-27T00:00:00.020000Z","verb":"list","resource":"pods","subresource":"","code":200}"#.into());
        lines.push(r#"{"ts":"2026-11-27T00:00:0"#.into());
        std::fs::write(&path, lines.join("\n") + "\n").expect("write");

        let summary =
            apiserver_latency(&path, base_us() + 10_000, base_us() + 3_000_000).expect("reads");
        assert_eq!(summary.unreadable, 2);
        let keys: Vec<&str> = summary.by_request.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["create pods", "get (non-resource)", "patch pods/status"]
        );
        let create = &summary.by_request["create pods"];
        assert_eq!(create.count, 100);
        assert_eq!(create.p50_ms, 50.0);
        assert_eq!(create.p99_ms, 99.0);
        assert_eq!(create.max_ms, 100.0);
        let status = &summary.by_request["patch pods/status"];
        assert_eq!(
            (status.count, status.p50_ms, status.p99_ms, status.max_ms),
            (1, 0.25, 0.25, 0.25)
        );
        assert_eq!(
            summary.rows("apiserver")[2],
            (
                "apiserver patch pods/status, ms p50/p99/max (n)".to_string(),
                "0.25/0.25/0.25 (1)".to_string()
            )
        );

        // The window's end is exclusive and its start inclusive.
        let later = apiserver_latency(&path, base_us() + 3_000_000, i64::MAX).expect("reads");
        assert_eq!(later.by_request["delete pods"].count, 1);
        assert_eq!(later.by_request["delete pods"].max_ms, 1_000.0);
        assert_eq!(later.by_request.len(), 1);

        assert!(apiserver_latency(&dir.path().join("missing"), 0, 1).is_err());
    }

    #[test]
    fn emulator_latency_separates_failed_calls() {
        let call = |action: &str, outcome: &str, received_us: i64, answered_us: i64| {
            vnode_eci_emulator::CallTiming {
                action: action.into(),
                outcome: outcome.into(),
                received_us,
                answered_us,
            }
        };
        let calls = [
            call("CreateContainerGroup", "ok", 100, 400),
            call("CreateContainerGroup", "ok", 200, 2_200),
            call("CreateContainerGroup", "Throttling.User", 300, 350),
            call("DescribeContainerGroups", "ok", 900, 1_000),
            call("DeleteContainerGroup", "ok", 5_000, 5_100),
        ];
        let summary = emulator_latency(&calls, 0, 5_000);
        let keys: Vec<&str> = summary.by_request.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "CreateContainerGroup",
                "CreateContainerGroup Throttling.User",
                "DescribeContainerGroups"
            ]
        );
        let create = &summary.by_request["CreateContainerGroup"];
        assert_eq!((create.count, create.p50_ms, create.max_ms), (2, 0.3, 2.0));
    }
}
