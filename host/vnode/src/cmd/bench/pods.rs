//! `vnode bench pods`: the whole pod path at scale, every part a separate process.
//!
//! It starts `vnode apiserver` (with an audit log), `vnode eci-emulator --record-calls`
//! (quotas lifted and instant lifecycle by default; `--real-quotas` for the documented
//! per-minute quotas and the default delays) and `vnode run` pointed at both, all spawned
//! from this executable. Then it creates N pods bound to the virtual node at a chosen rate,
//! waits until all are `Running`, holds them for a while (steady-state status polling),
//! deletes them, waits until every pod and container group is gone, and writes
//! `OUT/report.json` plus a summary table with the issue #7 targets.
//!
//! Where each number comes from (so nothing is guessed from a coarse clock):
//! - *pod bound*: the pods are created with `spec.nodeName` set, so they are bound when the
//!   create commits. The API server's audit record of the create (microseconds, taken after
//!   the commit, before the answer is sent) stands in for that moment: records carry no pod
//!   name, so the k-th earliest is paired with the k-th create by resourceVersion (commit
//!   order), which is never earlier than that create's commit (`audit_bound_times`). This
//!   tool's own "create answered" and "first seen by its watch" are later still by its own
//!   scheduling (reported as `pod_bound_to_create_answered_by_bench`), and are used only
//!   when they are earlier or the records do not pair up.
//! - *CreateContainerGroup issued*: the emulator's record of when it handled the create
//!   (wall clock, microseconds; same host, same clock).
//! - *ECI Running*: the emulator's moment the group's containers start.
//! - *pod status Running written*: when this tool's watch sees `status.phase: Running`.
//! - Kubernetes API requests: the API server's audit log, minus this tool's own requests
//!   (it authenticates with its own client certificate, user `vnode-bench`).
//! - ECI calls: the emulator's per-action, per-outcome counters.
//! - daemon CPU and memory: `/proc/<pid>/stat` (utime + stime) and `/proc/<pid>/status`
//!   (`VmHWM`, the peak resident set).
//! - plugin decision latency: the daemon's `vnode_plugin_decision_seconds` histogram, so
//!   percentiles are bucket bounds, not exact values.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::{StreamExt as _, TryStreamExt as _};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt as _;

mod windows;

/// User name (client-certificate CN) of this tool's own Kubernetes requests.
const BENCH_USER: &str = "vnode-bench";
/// Name of the virtual node the daemon registers.
const NODE_NAME: &str = "vnode-bench";
/// Label on every pod this tool creates.
const POD_LABEL: (&str, &str) = ("app", "vnode-bench");
/// The pod annotation naming its container group (the daemon's `vnode.io/container-group-id`).
const GROUP_ANNOTATION: &str = "vnode.io/container-group-id";

#[derive(clap::Args)]
pub struct Args {
    /// Number of pods.
    #[arg(long, default_value_t = 1000)]
    pub pods: usize,
    /// Pods created per second (0: as fast as `--concurrency` creators manage).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Directory for `report.json`, the processes' logs and the API server's files.
    #[arg(long, default_value = "vnode-bench-pods")]
    pub out: PathBuf,
    /// Concurrent pod create/delete requests.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// ECI as documented: the per-minute quotas on and the default lifecycle delays
    /// (scheduling + image pull). By default quotas are lifted and groups run at creation,
    /// so the daemon itself is measured.
    #[arg(long)]
    pub real_quotas: bool,
    /// An emulator profile (YAML, see host/vnode-eci-emulator/PROFILE.md) instead of the
    /// one chosen by `--real-quotas`.
    #[arg(long, value_name = "FILE")]
    pub emulator_profile: Option<PathBuf>,
    /// The daemon's `intervals.podStatusPoll` (its default when absent), e.g. `1s`.
    #[arg(long)]
    pub status_poll: Option<String>,
    /// The daemon's `concurrency.podWorkers` (its default when absent).
    #[arg(long)]
    pub pod_workers: Option<usize>,
    /// Seconds to keep every pod Running before deleting (steady-state status polling).
    #[arg(long, default_value_t = 15)]
    pub hold_secs: u64,
    /// Longest wait for each phase in seconds (default 60 + pods / 20).
    #[arg(long)]
    pub timeout_secs: Option<u64>,
    /// The daemon's compiled-plugin cache (`plugins.cacheDir`), shared between runs so a
    /// run does not wait for Cranelift to compile the built-in plugins again (default: a
    /// `vnode-plugin-cache` directory under the system temp dir).
    #[arg(long, value_name = "DIR")]
    pub plugin_cache: Option<PathBuf>,
    /// The daemon's log filter (`VNODE_LOG`); its log goes to `OUT/daemon.log`.
    #[arg(long, default_value = "info")]
    pub daemon_log: String,
    /// Create all pods (bound to the node) before the daemon starts, then measure how fast
    /// the daemon alone works off the backlog: the API server serves only the daemon's own
    /// reads and writes, not the creates, so the rate is the daemon's and not the two
    /// processes' shared one. Reported as `backlog_*` figures; the latency from pod bound to
    /// CreateContainerGroup is not meaningful in this mode and is left out.
    #[arg(long, conflicts_with = "rate")]
    pub backlog: bool,
}

// ---------------------------------------------------------------------------------------
// Child processes

/// A spawned `vnode` subcommand; killed when dropped.
struct Service {
    name: &'static str,
    child: tokio::process::Child,
    url: String,
}

impl Service {
    async fn spawn(
        name: &'static str,
        args: &[String],
        env: &[(&str, String)],
        log: &Path,
        start_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating the vnode executable")?;
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let url = tokio::time::timeout(start_timeout, async {
            while let Some(line) = lines.next_line().await? {
                if let Some((_, url)) = line.rsplit_once(" listening on ") {
                    return Ok::<_, anyhow::Error>(url.trim().to_string());
                }
            }
            bail!(
                "{name} exited before it was listening (see {})",
                log.display()
            )
        })
        .await
        .with_context(|| format!("{name} did not start within {start_timeout:?}"))??;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { name, child, url })
    }

    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGTERM, then SIGKILL after `grace`.
    async fn stop(mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            let _ = tokio::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
            if tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
                return;
            }
        }
        tracing::warn!(service = self.name, "did not stop in time; killing it");
        let _ = self.child.kill().await;
    }
}

// ---------------------------------------------------------------------------------------
// /proc sampling of the daemon

#[derive(Debug, Clone, Copy, Default, Serialize)]
struct ProcSample {
    cpu_seconds: f64,
    rss_mib: f64,
    peak_rss_mib: f64,
}

/// The daemon's resident memory at one moment, by kind (`/proc/<pid>/status`): `anon` is
/// its heap and stacks, `file` the mapped executable and libraries, `shmem` shared memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
struct MemorySample {
    /// Seconds since the first pod was created (negative: before).
    t_s: f64,
    rss_mib: f64,
    anon_mib: f64,
    file_mib: f64,
    shmem_mib: f64,
}

impl MemorySample {
    /// Parses `/proc/<pid>/status`'s `VmRSS`, `RssAnon`, `RssFile` and `RssShmem`.
    fn parse(status: &str, t_s: f64) -> Option<Self> {
        Some(Self {
            t_s,
            rss_mib: status_mib(status, "VmRSS:")?,
            anon_mib: status_mib(status, "RssAnon:")?,
            file_mib: status_mib(status, "RssFile:")?,
            shmem_mib: status_mib(status, "RssShmem:")?,
        })
    }
}

/// A `/proc/<pid>/status` figure given in kB (`key` with its colon, e.g. `VmRSS:`), in MiB.
fn status_mib(status: &str, key: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
}

/// When the daemon's resident memory peaked, what it was made of, and its course over the
/// run: memory that grows with a backlog (work queued while another stage is behind) shows
/// as a peak in one phase, memory per pod as the level held through the hold.
#[derive(Debug, Default, Serialize)]
struct DaemonMemory {
    /// The sample with the largest RSS (sampled every 250 ms, so `VmHWM` may be a little
    /// higher).
    peak: MemorySample,
    /// The phase the peak fell in: `create` (until every pod is Running), `hold` or `delete`.
    peak_phase: &'static str,
    /// Every sample of the run.
    timeline: Vec<MemorySample>,
}

impl DaemonMemory {
    /// From the samples of the run and the ends (seconds since the first create) of the
    /// create phase and the hold.
    fn new(timeline: Vec<MemorySample>, create_end_s: f64, hold_end_s: f64) -> Self {
        let peak = timeline
            .iter()
            .copied()
            .max_by(|a, b| a.rss_mib.total_cmp(&b.rss_mib))
            .unwrap_or_default();
        let peak_phase = if peak.t_s <= create_end_s {
            "create"
        } else if peak.t_s <= hold_end_s {
            "hold"
        } else {
            "delete"
        };
        Self {
            peak,
            peak_phase,
            timeline,
        }
    }
}

/// `/proc/loadavg`'s 1, 5 and 15 minute figures.
fn load_average() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| {
            s.split_whitespace()
                .take(3)
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

fn sample_proc(pid: u32, ticks: f64) -> Option<ProcSample> {
    sample_proc_and_status(pid, ticks).map(|(sample, _)| sample)
}

/// [`sample_proc`], and the `/proc/<pid>/status` text it read, for a caller that reads
/// more of it (the daemon's memory by kind) without reading the file twice.
fn sample_proc_and_status(pid: u32, ticks: f64) -> Option<(ProcSample, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let cpu_ticks = super::ProcStat::parse(&stat)?.cpu_ticks as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let sample = ProcSample {
        cpu_seconds: cpu_ticks / ticks,
        rss_mib: status_mib(&status, "VmRSS:")?,
        peak_rss_mib: status_mib(&status, "VmHWM:")?,
    };
    Some((sample, status))
}

// ---------------------------------------------------------------------------------------
// What this tool observes about each pod

#[derive(Debug, Clone, Default)]
struct PodTrack {
    uid: Option<String>,
    /// Wall-clock microseconds.
    sent_us: i64,
    acked_us: Option<i64>,
    seen_us: Option<i64>,
    running_us: Option<i64>,
    failed: bool,
    gone_us: Option<i64>,
    group_annotation: Option<String>,
    /// The resourceVersion its create committed (from the create's answer): the API
    /// server's commit order of the creates.
    created_rv: Option<u64>,
}

#[derive(Default)]
struct Tracker {
    pods: HashMap<String, PodTrack>,
    /// Create calls that failed, `name: error`.
    create_errors: Vec<String>,
}

impl Tracker {
    fn counts(&self) -> (usize, usize, usize, usize) {
        let mut acked = 0;
        let mut running = 0;
        let mut failed = 0;
        let mut gone = 0;
        for p in self.pods.values() {
            acked += usize::from(p.acked_us.is_some());
            running += usize::from(p.running_us.is_some());
            failed += usize::from(p.failed);
            gone += usize::from(p.gone_us.is_some());
        }
        (acked, running, failed, gone)
    }
}

fn now_us() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

fn observe(tracker: &Mutex<Tracker>, pod: &BenchPod, deleted: bool) {
    let Some(name) = pod.metadata.name.clone() else {
        return;
    };
    let now = now_us();
    let mut t = tracker.lock();
    let entry = t.pods.entry(name).or_default();
    if entry.seen_us.is_none() {
        entry.seen_us = Some(now);
    }
    if entry.uid.is_none() {
        entry.uid = pod.metadata.uid.clone();
    }
    if let Some(id) = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(GROUP_ANNOTATION))
    {
        entry.group_annotation = Some(id.clone());
    }
    match pod.phase.as_deref() {
        Some("Running") if entry.running_us.is_none() => entry.running_us = Some(now),
        Some("Failed") => entry.failed = true,
        _ => {}
    }
    if deleted && entry.gone_us.is_none() {
        entry.gone_us = Some(now);
    }
}

/// What this tool reads of its pods: name, UID, resourceVersion, the group annotation and
/// the phase. Its watch, creates and deletes decode only these (serde skips the spec and the
/// rest of the status without building them); decoding whole `Pod`s cost this tool ~0.85 ms
/// of CPU per pod, on the same two cores as the processes it measures.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(from = "BenchPodWire")]
struct BenchPod {
    /// Only name, namespace, UID, resourceVersion and the group annotation are filled.
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    phase: Option<String>,
}

#[derive(Deserialize)]
struct BenchPodWire {
    #[serde(default)]
    metadata: BenchMeta,
    #[serde(default)]
    status: Option<BenchStatus>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BenchMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Default, Deserialize)]
struct BenchStatus {
    phase: Option<String>,
}

impl From<BenchPodWire> for BenchPod {
    fn from(w: BenchPodWire) -> Self {
        let BenchMeta {
            name,
            namespace,
            uid,
            resource_version,
            mut annotations,
        } = w.metadata;
        let group = annotations.remove(GROUP_ANNOTATION);
        BenchPod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name,
                namespace,
                uid,
                resource_version,
                annotations: group.map(|g| BTreeMap::from([(GROUP_ANNOTATION.to_string(), g)])),
                ..Default::default()
            },
            phase: w.status.and_then(|s| s.phase),
        }
    }
}

impl kube::Resource for BenchPod {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        "Pod".into()
    }
    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        "pods".into()
    }
    fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        &mut self.metadata
    }
}

/// The create body of pod `i`, bound to the virtual node.
fn bench_pod_body(i: usize) -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("bench-{i:06}"),
            "labels": { POD_LABEL.0: POD_LABEL.1 },
        },
        "spec": {
            "nodeName": NODE_NAME,
            "tolerations": [{ "key": "virtual-kubelet.io/provider", "operator": "Exists" }],
            "containers": [{
                "name": "app",
                "image": "nginx:1.25",
                "env": [{ "name": "INDEX", "value": i.to_string() }],
                "resources": { "requests": { "cpu": "250m", "memory": "512Mi" } },
            }],
        },
    }))?)
}

/// Creates pod `i` in `default`; the answer is decoded as a [`BenchPod`].
async fn create_bench_pod(client: &kube::Client, i: usize) -> anyhow::Result<BenchPod> {
    use kube::Resource as _;
    let request = kube::core::Request::new(BenchPod::url_path(&(), Some("default")))
        .create(&PostParams::default(), bench_pod_body(i)?)?;
    Ok(client.request(request).await?)
}

// ---------------------------------------------------------------------------------------
// Emulator stats and daemon metrics

#[derive(Debug, Clone, Default, Deserialize)]
struct EmulatorStats {
    calls: Vec<vnode_eci_emulator::CallCount>,
    groups: Vec<vnode_eci_emulator::GroupRecord>,
    create_replays: u64,
}

impl EmulatorStats {
    fn calls_by_action(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let mut m: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for c in &self.calls {
            *m.entry(c.action.clone())
                .or_default()
                .entry(c.outcome.clone())
                .or_default() += c.count;
        }
        m
    }

    fn total(&self, action: &str) -> u64 {
        self.calls
            .iter()
            .filter(|c| c.action == action)
            .map(|c| c.count)
            .sum()
    }
}

async fn emulator_stats(http: &reqwest::Client, url: &str) -> anyhow::Result<EmulatorStats> {
    let stats = http
        .get(format!("{url}{}", vnode_eci_emulator::STATS_PATH))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(stats)
}

/// One sample line of the Prometheus text format: name, labels, value.
fn parse_sample(line: &str) -> Option<(&str, BTreeMap<String, String>, f64)> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let (head, value) = line.rsplit_once(' ')?;
    let value: f64 = value.trim().parse().ok()?;
    let (name, labels) = match head.split_once('{') {
        Some((n, rest)) => (n, rest.strip_suffix('}')?),
        None => (head, ""),
    };
    let mut map = BTreeMap::new();
    // Label values written by the daemon never contain `",` or escaped quotes.
    for pair in labels.split("\",").filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once("=\"")?;
        map.insert(k.trim().to_string(), v.trim_end_matches('"').to_string());
    }
    Some((name, map, value))
}

/// Pod events the daemon dropped (its event queues were full), from its `/metrics`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
struct EventsDropped {
    /// Every dropped event (`vnode_events_dropped_total`).
    all: u64,
    /// Of those, the daemon's own decisions: Placed, Created, refusals, failures
    /// (`vnode_decision_events_dropped_total`); the rest were mirrored from ECI.
    decisions: u64,
}

fn events_dropped(metrics: &str) -> EventsDropped {
    let mut dropped = EventsDropped::default();
    for (name, _, value) in metrics.lines().filter_map(parse_sample) {
        match name {
            "vnode_events_dropped_total" => dropped.all = value as u64,
            "vnode_decision_events_dropped_total" => dropped.decisions = value as u64,
            _ => {}
        }
    }
    dropped
}

#[derive(Debug, Clone, Serialize)]
struct HistogramSummary {
    count: f64,
    mean_ms: f64,
    /// Upper bound of the bucket holding the 50th percentile.
    p50_le_ms: Option<f64>,
    /// Upper bound of the bucket holding the 99th percentile.
    p99_le_ms: Option<f64>,
}

/// `vnode_plugin_decision_seconds` by `kind` + `plugin`, from the daemon's `/metrics`.
fn plugin_latency(metrics: &str) -> BTreeMap<String, HistogramSummary> {
    #[derive(Default)]
    struct Acc {
        buckets: Vec<(f64, f64)>,
        sum: f64,
        count: f64,
    }
    let mut acc: BTreeMap<String, Acc> = BTreeMap::new();
    for line in metrics.lines() {
        let Some((name, labels, value)) = parse_sample(line) else {
            continue;
        };
        if !name.starts_with("vnode_plugin_decision_seconds") {
            continue;
        }
        let key = format!(
            "{} {}",
            labels.get("kind").map_or("?", String::as_str),
            labels.get("plugin").map_or("?", String::as_str)
        );
        let a = acc.entry(key).or_default();
        if name.ends_with("_bucket") {
            let le = labels
                .get("le")
                .and_then(|l| {
                    if l == "+Inf" {
                        Some(f64::INFINITY)
                    } else {
                        l.parse().ok()
                    }
                })
                .unwrap_or(f64::INFINITY);
            a.buckets.push((le, value));
        } else if name.ends_with("_sum") {
            a.sum = value;
        } else if name.ends_with("_count") {
            a.count = value;
        }
    }
    acc.into_iter()
        .filter(|(_, a)| a.count > 0.0)
        .map(|(k, mut a)| {
            a.buckets.sort_by(|x, y| x.0.total_cmp(&y.0));
            let quantile = |q: f64| {
                a.buckets
                    .iter()
                    .find(|(_, cum)| *cum >= q * a.count)
                    .map(|(le, _)| le * 1000.0)
                    .filter(|v| v.is_finite())
            };
            let s = HistogramSummary {
                count: a.count,
                mean_ms: a.sum / a.count * 1000.0,
                p50_le_ms: quantile(0.50),
                p99_le_ms: quantile(0.99),
            };
            (k, s)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Audit log

#[derive(Deserialize)]
struct AuditLine {
    ts: String,
    user: Option<String>,
    verb: String,
    resource: String,
    subresource: String,
    #[serde(default)]
    code: u16,
}

/// The API server's moment for each of this tool's pod creates, by pod name.
///
/// The audit record of a request is taken by the server after it committed the write and
/// built the answer, in microseconds: a moment no earlier than the commit (the daemon's
/// watch may see the pod before it, never the other way round) and, unlike this tool's own
/// "answered"/"seen", not delayed by this tool's scheduling. A create's record carries no
/// pod name (the URL has none), so records are matched to pods by order: the k-th earliest
/// record of a successful create is at or after the k-th commit (each of the k earliest
/// records is at or after its own commit, and k distinct commits end no earlier than the
/// k-th), and creates commit in resourceVersion order. So the k-th record, given to the pod
/// whose create has the k-th resourceVersion, is still never before that pod was bound.
/// `None` when the records and the answered creates do not pair up one to one.
fn audit_bound_times(
    path: &Path,
    pods: &HashMap<String, PodTrack>,
) -> Option<HashMap<String, i64>> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut records: Vec<i64> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<AuditLine>(line).ok())
        .filter(|a| {
            a.user.as_deref() == Some(BENCH_USER)
                && a.verb == "create"
                && a.resource == "pods"
                && a.subresource.is_empty()
                && (200..300).contains(&a.code)
        })
        .filter_map(|a| a.ts.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_microsecond())
        .collect();
    let mut created: Vec<(u64, &String)> = pods
        .iter()
        .filter(|(_, p)| p.acked_us.is_some())
        .map(|(name, p)| p.created_rv.map(|rv| (rv, name)))
        .collect::<Option<_>>()?;
    if records.len() != created.len() {
        return None;
    }
    records.sort_unstable();
    created.sort_unstable();
    Some(
        created
            .into_iter()
            .zip(records)
            .map(|((_, name), ts)| (name.clone(), ts))
            .collect(),
    )
}

/// Requests by `verb resource[/subresource]`, the daemon's only (not this tool's), within
/// `[from, to)` (audit timestamps compare as strings: fixed-width UTC).
fn audit_counts(path: &Path, from: &str, to: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let Ok(a) = serde_json::from_str::<AuditLine>(line) else {
            continue;
        };
        if a.user.as_deref() == Some(BENCH_USER) || a.ts.as_str() < from || a.ts.as_str() >= to {
            continue;
        }
        let kind = super::audit::request_kind(&a.verb, &a.resource, &a.subresource);
        *m.entry(kind).or_default() += 1;
    }
    Ok(m)
}

/// Waits until the API server's audit log holds every record up to now: makes a request
/// of this tool's own (a GET of a ConfigMap that does not exist, under a unique name) and
/// waits for its record. The server writes records in timestamp order (in batches, a few
/// ms late), so once that record is in the file so is every earlier one, and counts up to
/// a time before this call are exact.
async fn audit_barrier(env: &Env, timeout: Duration) -> anyhow::Result<()> {
    let audit_log = &env.audit_log;
    let name = format!("vnode-bench-audit-barrier-{}", now_us());
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(env.client.clone(), "default");
    api.get_opt(&name).await?;
    let needle = format!("\"name\":\"{name}\"");
    let deadline = Instant::now() + timeout;
    loop {
        let text = tokio::fs::read_to_string(audit_log)
            .await
            .with_context(|| format!("reading {}", audit_log.display()))?;
        if text.contains(&needle) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the audit log did not record this tool's barrier request {name} within {timeout:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every request in the audit log within `[from_us, to_us)`, with its kind for the
/// create-phase windows.
fn audit_request_points(path: &Path, from_us: i64, to_us: i64) -> Vec<(i64, windows::RequestKind)> {
    use windows::RequestKind;
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| serde_json::from_str::<AuditLine>(line).ok())
        .filter_map(|a| {
            let t = a.ts.parse::<jiff::Timestamp>().ok()?.as_microsecond();
            if t < from_us || t >= to_us {
                return None;
            }
            let kind = if a.user.as_deref() == Some(BENCH_USER) {
                RequestKind::Bench
            } else if a.verb == "patch" && a.resource == "pods" && a.subresource == "status" {
                RequestKind::DaemonStatusWrite
            } else if a.verb == "create" && a.resource == "events" {
                RequestKind::DaemonEventWrite
            } else {
                RequestKind::DaemonOther
            };
            Some((t, kind))
        })
        .collect()
}

fn audit_ts(us: i64) -> String {
    jiff::Timestamp::from_microsecond(us)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string())
        .unwrap_or_default()
}

fn is_write(verb: &str) -> bool {
    matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    )
}

// ---------------------------------------------------------------------------------------
// Report

#[derive(Debug, Clone, Serialize)]
struct Percentiles {
    samples: usize,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn percentiles(mut v: Vec<f64>) -> Option<Percentiles> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| super::nearest_rank(&v, q);
    Some(Percentiles {
        samples: v.len(),
        p50_ms: at(0.50),
        p95_ms: at(0.95),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    })
}

#[derive(Debug, Clone, Serialize)]
struct Target {
    name: String,
    target: String,
    measured: String,
    /// `None` when this run's setup is not the one the target is stated for.
    pass: Option<bool>,
    note: String,
}

#[derive(Debug, Serialize)]
struct Report {
    setup: serde_json::Value,
    pods: usize,
    running: usize,
    failed: usize,
    never_running: usize,
    create_errors: usize,
    timings_s: BTreeMap<String, f64>,
    throughput: BTreeMap<String, f64>,
    latency_ms: BTreeMap<String, Option<Percentiles>>,
    correctness: BTreeMap<String, serde_json::Value>,
    daemon: BTreeMap<String, ProcSample>,
    /// The daemon's resident memory over the run: when it peaked and of what.
    daemon_memory: DaemonMemory,
    /// The API server, the emulator and this tool: CPU-seconds during the create phase and
    /// the whole run (the machine's cores are shared, so their load bounds the daemon's).
    other_processes: BTreeMap<String, BTreeMap<String, ProcSample>>,
    kubernetes_requests: BTreeMap<String, BTreeMap<String, u64>>,
    kubernetes_requests_per_pod: BTreeMap<String, f64>,
    kubernetes_pod_writes_per_pod: f64,
    eci_calls: BTreeMap<String, BTreeMap<String, u64>>,
    eci_calls_per_pod: BTreeMap<String, f64>,
    eci_throttled: u64,
    events_dropped: EventsDropped,
    status_polling_per_minute_while_running: BTreeMap<String, f64>,
    plugin_decision_latency: BTreeMap<String, HistogramSummary>,
    /// The API server's and the emulator's own handling time per kind of request over the
    /// run (audit log, `/_emulator/calls`).
    server_latency: BTreeMap<String, super::audit::LatencySummary>,
    /// The create phase in windows (see `windows`): where the slow pods fall and what else
    /// ran then.
    create_phase_windows: CreateWindows,
    targets: Vec<Target>,
}

#[derive(Debug, Serialize)]
struct CreateWindows {
    width_ms: f64,
    /// Whose CPU and run-queue wait each window lists.
    processes: Vec<&'static str>,
    windows: Vec<windows::Window>,
}

// ---------------------------------------------------------------------------------------
// The run

struct Env {
    /// Wall-clock microseconds when the daemon answered `/readyz` (with `--backlog`, all
    /// pods existed before it started).
    daemon_ready_us: i64,
    apiserver: Service,
    emulator: Service,
    daemon: Service,
    audit_log: PathBuf,
    client: kube::Client,
    http: reqwest::Client,
}

fn phase_timeout(args: &Args) -> Duration {
    Duration::from_secs(args.timeout_secs.unwrap_or(60 + (args.pods as u64) / 20))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.pods > 0, "--pods must be positive");
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be positive");
    anyhow::ensure!(
        args.rate >= 0.0 && args.rate.is_finite(),
        "--rate must be >= 0"
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let out = std::fs::canonicalize(&args.out)?;
    let env = start(&args, &out).await?;
    // Ctrl-C/SIGTERM still stops the three processes (dropping them on a signal death
    // would not run).
    let result = tokio::select! {
        r = measure(&args, &out, &env) => r,
        () = crate::cmd::shutdown_signal() => Err(anyhow::anyhow!("interrupted")),
    };
    let Env {
        apiserver,
        emulator,
        daemon,
        ..
    } = env;
    daemon.stop(Duration::from_secs(10)).await;
    emulator.stop(Duration::from_secs(5)).await;
    apiserver.stop(Duration::from_secs(5)).await;
    let report = result?;
    let path = out.join("report.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", path.display()))?;
    print_summary(&report);
    println!("report: {}", path.display());
    Ok(())
}

async fn start(args: &Args, out: &Path) -> anyhow::Result<Env> {
    let api_dir = out.join("apiserver");
    // A fresh store every run; the CA is created here first so this tool can issue its own
    // client certificate (user `vnode-bench`) before the server starts.
    let _ = std::fs::remove_dir_all(&api_dir);
    let pki = vnode_apiserver::Pki::load_or_create(&api_dir)?;
    let bench_cert = pki.issue_client_cert(BENCH_USER, &["system:masters"])?;
    pki.write_pair("bench.crt", "bench.key", &bench_cert)?;
    let audit_log = out.join("apiserver-audit.jsonl");
    let _ = std::fs::remove_file(&audit_log);
    let watch_window = (args.pods * 8 + 10_000).to_string();
    eprintln!(
        "bench: starting apiserver, eci-emulator and daemon (logs in {})",
        out.display()
    );
    let apiserver = Service::spawn(
        "apiserver",
        &[
            "apiserver".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--dir".into(),
            api_dir.to_string_lossy().into(),
            "--no-scheduler".into(),
            "--watch-window".into(),
            watch_window,
            "--audit-log".into(),
            audit_log.to_string_lossy().into(),
        ],
        &[],
        &out.join("apiserver.log"),
        phase_timeout(args),
    )
    .await?;

    let profile_path = match &args.emulator_profile {
        Some(p) => p.clone(),
        None => {
            let p = out.join("emulator-profile.yaml");
            let text = if args.real_quotas {
                "{}\n"
            } else {
                "timing: {instant: true}\n"
            };
            std::fs::write(&p, text)?;
            p
        }
    };
    let mut emu_args: Vec<String> = vec![
        "eci-emulator".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--record-calls".into(),
        "--profile".into(),
        profile_path.to_string_lossy().into(),
    ];
    if !args.real_quotas {
        emu_args.push("--no-quotas".into());
    }
    let emulator = Service::spawn(
        "eci-emulator",
        &emu_args,
        &[
            (
                "ECI_ACCESS_KEY",
                vnode_eci_emulator::DEFAULT_ACCESS_KEY_ID.to_string(),
            ),
            (
                "ECI_SECRET_KEY",
                vnode_eci_emulator::DEFAULT_ACCESS_KEY_SECRET.to_string(),
            ),
        ],
        &out.join("emulator.log"),
        phase_timeout(args),
    )
    .await?;

    if args.backlog {
        create_backlog(args, &api_dir, &apiserver.url).await?;
    }

    // The daemon: admin kubeconfig written by the API server, everything on loopback.
    let capacity = (args.pods * 2).max(1000);
    let mut config = format!(
        "node:\n  capacity: {{cpu: \"{}\", memory: {}Gi, pods: \"{capacity}\"}}\n\
         listen: {{kubelet: \"127.0.0.1:0\"}}\n\
         kubelet:\n  clientCaFile: {}\n  authorization: alwaysAllow\n\
         leaderElection: {{namespace: default, leaseDuration: 15s, retryPeriod: 2s}}\n\
         shutdownGrace: 5s\n",
        capacity * 4,
        capacity * 16,
        api_dir.join("ca.crt").display()
    );
    if let Some(poll) = &args.status_poll {
        config.push_str(&format!("intervals: {{podStatusPoll: {poll}}}\n"));
    }
    if let Some(w) = args.pod_workers {
        config.push_str(&format!("concurrency: {{podWorkers: {w}}}\n"));
    }
    let plugin_cache = args
        .plugin_cache
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("vnode-plugin-cache"));
    std::fs::create_dir_all(&plugin_cache)
        .with_context(|| format!("creating {}", plugin_cache.display()))?;
    config.push_str(&format!(
        "plugins: {{cacheDir: {}}}\n",
        serde_json::to_string(&plugin_cache.to_string_lossy())?
    ));
    if !args.real_quotas {
        // Quotas lifted in the emulator: lift the daemon's own pacing too, or its limiter
        // (documented quotas) is what gets measured.
        config.push_str("eci: {rateLimits: unlimited}\n");
    }
    // In a directory of its own: the daemon watches its config file's directory (hot
    // reload), and the logs and audit log written next to it would wake it constantly.
    let config_dir = out.join("daemon-config");
    std::fs::create_dir_all(&config_dir)?;
    let config_path = config_dir.join("daemon.yaml");
    std::fs::write(&config_path, config)?;
    let kubeconfig = api_dir.join("kubeconfig");
    let daemon = Service::spawn(
        "daemon",
        &[
            "run".into(),
            "--provider".into(),
            "alibabacloud".into(),
            "--config".into(),
            config_path.to_string_lossy().into(),
            "--kubeconfig".into(),
            kubeconfig.to_string_lossy().into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ],
        &[
            ("DEFAULT_NODE_NAME", NODE_NAME.into()),
            ("VKUBELET_POD_IP", "127.0.0.1".into()),
            ("ECI_REGION", "cn-hangzhou".into()),
            // Each vSwitch named with its zone, as an operator configures a node: placement
            // then chooses the zone and the create path records it, so no pod needs the
            // observer's zone-annotation repair (one more pod write each when ECI picks).
            (
                "ECI_VSWITCH",
                "cn-hangzhou-h=vsw-bench-h,cn-hangzhou-i=vsw-bench-i,cn-hangzhou-k=vsw-bench-k"
                    .into(),
            ),
            ("ECI_SECURITY_GROUP", "sg-bench".into()),
            (
                "ECI_ACCESS_KEY",
                vnode_eci_emulator::DEFAULT_ACCESS_KEY_ID.to_string(),
            ),
            (
                "ECI_SECRET_KEY",
                vnode_eci_emulator::DEFAULT_ACCESS_KEY_SECRET.to_string(),
            ),
            ("ECI_ENDPOINT", emulator.url.clone()),
            ("ECI_CLUSTER_NAME", "bench".into()),
            ("POD_NAMESPACE", "default".into()),
            ("POD_NAME", "vnode-bench-daemon".into()),
            ("VNODE_LOG", args.daemon_log.clone()),
            ("VNODE_LOG_FORMAT", "text".into()),
        ],
        &out.join("daemon.log"),
        // The daemon loads (and, with a cold cache, compiles) its plugins before it listens.
        phase_timeout(args),
    )
    .await?;

    // This tool's own client: the same server, its own certificate.
    let bench_kubeconfig = out.join("bench-kubeconfig");
    std::fs::write(
        &bench_kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: bench\n  cluster:\n    server: {}\n    certificate-authority: {}\n\
             users:\n- name: {BENCH_USER}\n  user:\n    client-certificate: {}\n    client-key: {}\n\
             contexts:\n- name: bench\n  context: {{cluster: bench, user: {BENCH_USER}}}\ncurrent-context: bench\n",
            apiserver.url,
            api_dir.join("ca.crt").display(),
            api_dir.join("bench.crt").display(),
            api_dir.join("bench.key").display(),
        ),
    )?;
    let kc = kube::config::Kubeconfig::read_from(&bench_kubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await?;
    let client = kube::Client::try_from(cfg)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;

    // Ready: node registered and the first pod listing done. Start-up compiles the plugins
    // when the cache is cold, which on a loaded machine can take most of a minute: wait as
    // long as for any phase.
    let ready_timeout = phase_timeout(args);
    let deadline = Instant::now() + ready_timeout;
    loop {
        let ready = http
            .get(format!("{}/readyz", daemon.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        if Instant::now() > deadline {
            // The log's last lines travel with the error: a test's temp dir (and the log in
            // it) is gone by the time anyone reads the failure.
            let log = out.join("daemon.log");
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            bail!(
                "the daemon did not become ready within {ready_timeout:?} (see {}); its last log lines:\n{tail}",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Env {
        daemon_ready_us: now_us(),
        apiserver,
        emulator,
        daemon,
        audit_log,
        client,
        http,
    })
}

/// `--backlog`: creates every pod, bound to the node, before the daemon exists.
async fn create_backlog(args: &Args, api_dir: &Path, server: &str) -> anyhow::Result<()> {
    let kubeconfig = api_dir.join("backlog-kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: bench\n  cluster:\n    server: {server}\n    certificate-authority: {}\n\
             users:\n- name: {BENCH_USER}\n  user:\n    client-certificate: {}\n    client-key: {}\n\
             contexts:\n- name: bench\n  context: {{cluster: bench, user: {BENCH_USER}}}\ncurrent-context: bench\n",
            api_dir.join("ca.crt").display(),
            api_dir.join("bench.crt").display(),
            api_dir.join("bench.key").display(),
        ),
    )?;
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await?;
    let client = kube::Client::try_from(cfg)?;
    let started = Instant::now();
    eprintln!(
        "bench: --backlog: creating {} pods before the daemon starts",
        args.pods
    );
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    paced(args.pods, 0.0, args.concurrency, |i| {
        let client = client.clone();
        let errors = Arc::clone(&errors);
        async move {
            if let Err(e) = create_bench_pod(&client, i).await {
                errors.lock().push(format!("bench-{i:06}: {e}"));
            }
        }
    })
    .await;
    let errors = errors.lock();
    if let Some(first) = errors.first() {
        bail!(
            "--backlog: {} pod creates failed; first: {first}",
            errors.len()
        );
    }
    eprintln!(
        "bench: --backlog: {} pods created in {:.1}s; starting the daemon",
        args.pods,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Waits until `done` holds, printing progress to stderr every second.
async fn wait_phase(
    what: &str,
    started: Instant,
    timeout: Duration,
    tracker: &Mutex<Tracker>,
    total: usize,
    mut done: impl FnMut(&Tracker) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    let mut last_print = Instant::now();
    loop {
        {
            let t = tracker.lock();
            if done(&t) {
                return true;
            }
            if last_print.elapsed() >= Duration::from_secs(1) {
                let (acked, running, failed, gone) = t.counts();
                eprintln!(
                    "bench: [{:>6.1}s] {what}: created {acked}/{total}  running {running}  failed {failed}  deleted {gone}",
                    started.elapsed().as_secs_f64()
                );
                last_print = Instant::now();
            }
        }
        if Instant::now() > deadline {
            eprintln!("bench: {what}: timed out after {timeout:?}");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `f(i)` for `0..n` with `concurrency` in flight, started at `rate` per second.
async fn paced<F, Fut>(n: usize, rate: f64, concurrency: usize, f: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = tokio::time::Instant::now();
    // `then` waits for each start time in order and hands the (not yet awaited) operation
    // on, so pacing is sequential while up to `concurrency` operations run at once.
    #[allow(clippy::async_yields_async)]
    futures::stream::iter(0..n)
        .then(|i| {
            let fut = f(i);
            async move {
                if rate > 0.0 {
                    tokio::time::sleep_until(started + Duration::from_secs_f64(i as f64 / rate))
                        .await;
                }
                fut
            }
        })
        .buffer_unordered(concurrency)
        .collect::<()>()
        .await;
}

async fn measure(args: &Args, out: &Path, env: &Env) -> anyhow::Result<Report> {
    let n = args.pods;
    let timeout = phase_timeout(args);
    let ticks = clock_ticks_per_second();
    let daemon_pid = env.daemon.pid().context("daemon pid")?;
    let api: Api<BenchPod> = Api::namespaced(env.client.clone(), "default");
    let tracker = Arc::new(Mutex::new(Tracker::default()));

    // Peak/latest /proc sample of the daemon and its memory by kind, every 250 ms (the
    // memory samples are stamped in µs and made relative to the first create later).
    let samples = Arc::new(Mutex::new(Vec::<ProcSample>::new()));
    let memory = Arc::new(Mutex::new(Vec::<(i64, MemorySample)>::new()));
    let sampler = tokio::spawn({
        let samples = Arc::clone(&samples);
        let memory = Arc::clone(&memory);
        async move {
            loop {
                if let Some((s, status)) = sample_proc_and_status(daemon_pid, ticks) {
                    samples.lock().push(s);
                    if let Some(m) = MemorySample::parse(&status, 0.0) {
                        memory.lock().push((now_us(), m));
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    });
    let proc_now = || sample_proc(daemon_pid, ticks).unwrap_or_default();
    // The other processes on the machine's two cores, so a bottleneck outside the daemon
    // shows up as such: the API server, the emulator and this tool itself.
    let others: Vec<(&str, u32)> = [
        ("apiserver", env.apiserver.pid()),
        ("eci-emulator", env.emulator.pid()),
        ("bench", Some(std::process::id())),
    ]
    .into_iter()
    .filter_map(|(name, pid)| pid.map(|p| (name, p)))
    .collect();
    let others_now = || -> Vec<ProcSample> {
        others
            .iter()
            .map(|(_, pid)| sample_proc(*pid, ticks).unwrap_or_default())
            .collect()
    };
    let load_start = load_average();

    // Scheduler counters of all four processes every 100 ms, for the create-phase windows.
    let sched_names: Vec<&'static str> = std::iter::once("daemon")
        .chain(others.iter().map(|(name, _)| *name))
        .collect();
    let sched = Arc::new(Mutex::new(windows::SchedSampler::new(
        std::iter::once(daemon_pid)
            .chain(others.iter().map(|(_, pid)| *pid))
            .collect(),
        ticks,
        now_us(),
    )));
    let sched_task = tokio::spawn({
        let sched = Arc::clone(&sched);
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                sched.lock().sample(now_us());
            }
        }
    });

    // This tool's watch on its pods.
    let watch_task = tokio::spawn({
        let api = api.clone();
        let tracker = Arc::clone(&tracker);
        async move {
            let cfg =
                watcher::Config::default().labels(&format!("{}={}", POD_LABEL.0, POD_LABEL.1));
            let mut stream = watcher(api, cfg).boxed();
            loop {
                match stream.try_next().await {
                    Ok(Some(watcher::Event::Apply(p) | watcher::Event::InitApply(p))) => {
                        observe(&tracker, &p, false)
                    }
                    Ok(Some(watcher::Event::Delete(p))) => observe(&tracker, &p, true),
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "bench pod watch");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let run_start_us = now_us();
    let proc_start = proc_now();
    let others_start = others_now();
    let started = Instant::now();
    eprintln!(
        "bench: creating {n} pods ({}; {} in flight)",
        if args.rate > 0.0 {
            format!("{} pods/s offered", args.rate)
        } else {
            "as fast as possible".to_string()
        },
        args.concurrency
    );

    // Phase 1: create, wait for Running.
    // With --backlog every pod existed before the daemon: its clock starts when it is ready.
    let create_start_us = if args.backlog {
        env.daemon_ready_us
    } else {
        now_us()
    };
    let creator = tokio::spawn({
        let client = env.client.clone();
        let tracker = Arc::clone(&tracker);
        let (rate, conc) = (args.rate, args.concurrency);
        let n = if args.backlog { 0 } else { n };
        async move {
            paced(n, rate, conc, |i| {
                let client = client.clone();
                let tracker = Arc::clone(&tracker);
                async move {
                    let name = format!("bench-{i:06}");
                    let sent = now_us();
                    tracker.lock().pods.entry(name.clone()).or_default().sent_us = sent;
                    let result = create_bench_pod(&client, i).await;
                    let acked = now_us();
                    let mut t = tracker.lock();
                    match result {
                        Ok(created) => {
                            let e = t.pods.entry(name).or_default();
                            e.acked_us = Some(acked);
                            e.created_rv = created
                                .metadata
                                .resource_version
                                .as_deref()
                                .and_then(|rv| rv.parse().ok());
                            if e.uid.is_none() {
                                e.uid = created.metadata.uid;
                            }
                        }
                        Err(e) => t.create_errors.push(format!("{name}: {e}")),
                    }
                }
            })
            .await
        }
    });
    let all_running = wait_phase("create", started, timeout, &tracker, n, |t| {
        t.pods.values().filter(|p| p.running_us.is_some()).count() >= n
            || (t.create_errors.len() + t.pods.values().filter(|p| p.failed).count() > 0
                && t.pods
                    .values()
                    .filter(|p| p.running_us.is_some() || p.failed)
                    .count()
                    + t.create_errors.len()
                    >= n)
    })
    .await;
    creator.await.context("creator task")?;
    let running_done_us = now_us();
    sched_task.abort();
    // The last interval, up to now: a short create phase may end before the next tick.
    sched.lock().sample(running_done_us);
    let proc_running = proc_now();
    let others_running = others_now();
    eprintln!(
        "bench: {} ({:.1}s)",
        if all_running {
            "all pods Running"
        } else {
            "NOT all pods Running"
        },
        started.elapsed().as_secs_f64()
    );

    // Phase 2: hold, measure steady-state polling.
    let hold_start_us = now_us();
    let stats_hold_start = emulator_stats(&env.http, &env.emulator.url).await?;
    tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
    let stats_hold_end = emulator_stats(&env.http, &env.emulator.url).await?;
    let hold_end_us = now_us();
    let hold_minutes = (hold_end_us - hold_start_us) as f64 / 60e6;
    let mut polling = BTreeMap::new();
    for action in [
        "DescribeContainerGroupStatus",
        "DescribeContainerGroups",
        "DescribeContainerGroupMetric",
    ] {
        let calls = stats_hold_end
            .total(action)
            .saturating_sub(stats_hold_start.total(action));
        polling.insert(
            action.to_string(),
            if hold_minutes > 0.0 {
                calls as f64 / hold_minutes
            } else {
                0.0
            },
        );
    }
    let metrics_text = env
        .http
        .get(format!("{}/metrics", env.daemon.url))
        .send()
        .await?
        .text()
        .await?;
    std::fs::write(out.join("daemon-metrics.txt"), &metrics_text)?;

    // Phase 3: delete everything, wait for pods and groups to be gone.
    let delete_start_us = now_us();
    let delete_started = Instant::now();
    eprintln!("bench: deleting {n} pods");
    let names: Vec<String> = {
        let t = tracker.lock();
        let mut v: Vec<String> = t.pods.keys().cloned().collect();
        v.sort();
        v
    };
    let delete_errors = Arc::new(Mutex::new(Vec::<String>::new()));
    paced(names.len(), args.rate, args.concurrency, |i| {
        let api = api.clone();
        let name = names[i].clone();
        let errors = Arc::clone(&delete_errors);
        async move {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => errors.lock().push(format!("{name}: {e}")),
            }
        }
    })
    .await;
    let pods_with_object = {
        let t = tracker.lock();
        t.pods.values().filter(|p| p.seen_us.is_some()).count()
    };
    let all_gone = wait_phase("delete", started, timeout, &tracker, n, |t| {
        t.pods.values().filter(|p| p.gone_us.is_some()).count() >= pods_with_object
    })
    .await;
    let pods_gone_us = now_us();
    // Groups: every recorded group gets its delete.
    let group_deadline = Instant::now() + timeout;
    let final_stats = loop {
        let s = emulator_stats(&env.http, &env.emulator.url).await?;
        let live = s.groups.iter().filter(|g| g.deleted_us.is_none()).count();
        if live == 0 || Instant::now() > group_deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let groups_gone_us = final_stats
        .groups
        .iter()
        .filter_map(|g| g.deleted_us)
        .max()
        .unwrap_or(pods_gone_us)
        .max(pods_gone_us);
    let delete_elapsed = delete_started.elapsed();
    let proc_end = proc_now();
    let others_end = others_now();
    let load_end = load_average();
    let end_us = now_us();
    sampler.abort();
    let since_start_s = |us: i64| (us - run_start_us) as f64 / 1e6;
    let daemon_memory = DaemonMemory::new(
        memory
            .lock()
            .iter()
            .map(|&(us, m)| MemorySample {
                t_s: since_start_s(us),
                ..m
            })
            .collect(),
        since_start_s(running_done_us),
        since_start_s(hold_end_us),
    );
    watch_task.abort();
    let final_metrics = env
        .http
        .get(format!("{}/metrics", env.daemon.url))
        .send()
        .await?
        .text()
        .await
        .unwrap_or(metrics_text);
    std::fs::write(out.join("daemon-metrics.txt"), &final_metrics)?;
    eprintln!(
        "bench: {} ({:.1}s)",
        if all_gone {
            "all pods deleted"
        } else {
            "NOT all pods deleted"
        },
        delete_elapsed.as_secs_f64()
    );

    // Every request up to `end_us` is in the audit log before the counts below read it.
    audit_barrier(env, phase_timeout(args)).await?;
    // How fast the two servers answered over the run (their own records), so a server that
    // limited the daemon shows as such.
    let emulator_calls = super::audit::emulator_calls(&env.http, &env.emulator.url).await?;
    let server_latency = BTreeMap::from([
        (
            "apiserver".to_string(),
            super::audit::apiserver_latency(&env.audit_log, run_start_us, end_us + 1)?,
        ),
        (
            "eci-emulator".to_string(),
            super::audit::emulator_latency(&emulator_calls, run_start_us, end_us + 1),
        ),
    ]);

    // ---- analysis
    let t = tracker.lock();
    let by_uid: HashMap<&str, (&String, &PodTrack)> = t
        .pods
        .iter()
        .filter_map(|(name, p)| p.uid.as_deref().map(|u| (u, (name, p))))
        .collect();
    let mut groups_per_pod: HashMap<&str, Vec<&vnode_eci_emulator::GroupRecord>> = HashMap::new();
    let mut foreign_groups = 0usize;
    for g in &final_stats.groups {
        match g.pod_uid.as_deref().filter(|u| by_uid.contains_key(u)) {
            Some(u) => groups_per_pod.entry(u).or_default().push(g),
            None => foreign_groups += 1,
        }
    }
    let pods_without_group = by_uid
        .keys()
        .filter(|u| !groups_per_pod.contains_key(*u))
        .count();
    let duplicate_groups: usize = groups_per_pod
        .values()
        .map(|v| v.len().saturating_sub(1))
        .sum();
    let orphans_left = final_stats
        .groups
        .iter()
        .filter(|g| g.deleted_us.is_none())
        .count();
    let annotation_mismatch = groups_per_pod
        .iter()
        .filter(|(u, gs)| {
            let Some((_, p)) = by_uid.get(*u) else {
                return false;
            };
            p.group_annotation
                .as_deref()
                .is_some_and(|a| !gs.iter().any(|g| g.id == a))
        })
        .count();

    let mut overhead = Vec::new();
    let mut status_lag = Vec::new();
    let mut to_running = Vec::new();
    let mut first_group_us = i64::MAX;
    let mut last_group_us = i64::MIN;
    // The server's moment of each create (see `audit_bound_times`); without it, this
    // tool's own "answered"/"seen", which its scheduling can only make later.
    let audit_bound = if args.backlog {
        None
    } else {
        audit_bound_times(&env.audit_log, &t.pods)
    };
    let mut bench_ack_lag = Vec::new();
    let mut pod_points = Vec::new();
    for (uid, gs) in &groups_per_pod {
        let Some((name, p)) = by_uid.get(uid) else {
            continue;
        };
        let Some(first) = gs.iter().min_by_key(|g| g.created_us) else {
            continue;
        };
        first_group_us = first_group_us.min(first.created_us);
        last_group_us = last_group_us.max(first.created_us);
        let bound = [
            audit_bound.as_ref().and_then(|m| m.get(*name)).copied(),
            p.acked_us,
            p.seen_us,
        ]
        .into_iter()
        .flatten()
        .min();
        if let (Some(a), Some(b)) = (p.acked_us, bound) {
            bench_ack_lag.push((a - b) as f64 / 1000.0);
        }
        // With --backlog the pods waited for the daemon to start: no per-pod overhead.
        if let Some(b) = bound.filter(|_| !args.backlog) {
            let overhead_ms = (first.created_us - b) as f64 / 1000.0;
            overhead.push(overhead_ms);
            pod_points.push(windows::PodPoint {
                bound_us: b,
                overhead_ms,
            });
        }
        if let Some(r) = p.running_us {
            status_lag.push((r - first.running_us) as f64 / 1000.0);
            if !args.backlog {
                to_running.push((r - p.sent_us) as f64 / 1000.0);
            }
        }
    }
    let running = t.pods.values().filter(|p| p.running_us.is_some()).count();
    let failed = t.pods.values().filter(|p| p.failed).count();
    let last_running_us = t
        .pods
        .values()
        .filter_map(|p| p.running_us)
        .max()
        .unwrap_or(running_done_us);
    let secs = |a: i64, b: i64| ((b - a) as f64 / 1e6).max(1e-9);

    let mut timings = BTreeMap::new();
    timings.insert(
        "create_to_all_running".into(),
        secs(create_start_us, last_running_us),
    );
    timings.insert(
        "create_to_last_create_group".into(),
        secs(create_start_us, last_group_us.max(create_start_us)),
    );
    timings.insert("hold".into(), secs(hold_start_us, hold_end_us));
    timings.insert(
        "delete_to_all_pods_gone".into(),
        secs(delete_start_us, pods_gone_us),
    );
    timings.insert(
        "delete_to_all_groups_gone".into(),
        secs(delete_start_us, groups_gone_us),
    );
    timings.insert("total".into(), secs(run_start_us, end_us));

    let mut throughput = BTreeMap::new();
    throughput.insert(
        "pods_per_s_created_to_running".into(),
        running as f64 / secs(create_start_us, last_running_us),
    );
    let groups_created = groups_per_pod.len();
    throughput.insert(
        "pods_per_s_to_create_container_group".into(),
        groups_created as f64 / secs(create_start_us, last_group_us.max(create_start_us + 1)),
    );
    if args.backlog && groups_created > 1 && last_group_us > first_group_us {
        // The daemon's drain rate once it is issuing creates (plugin warm-up and the first
        // listing excluded); `pods_per_s_to_create_container_group` counts from /readyz.
        throughput.insert(
            "backlog_pods_per_s_first_to_last_create_container_group".into(),
            (groups_created - 1) as f64 / secs(first_group_us, last_group_us),
        );
    }
    throughput.insert(
        "pods_per_s_deleted_fully".into(),
        n as f64 / secs(delete_start_us, groups_gone_us),
    );
    let acked: Vec<i64> = t.pods.values().filter_map(|p| p.acked_us).collect();
    if let (Some(first), Some(last)) = (acked.iter().min(), acked.iter().max()) {
        throughput.insert(
            "pods_per_s_created_by_this_tool".into(),
            acked.len() as f64 / secs(create_start_us, (*last).max(*first)),
        );
    }

    let mut latency = BTreeMap::new();
    latency.insert(
        "pod_bound_to_create_container_group".into(),
        percentiles(overhead),
    );
    latency.insert(
        "eci_running_to_pod_status_running".into(),
        percentiles(status_lag),
    );
    latency.insert("pod_create_to_pod_running".into(), percentiles(to_running));
    // How much later than the server this tool learnt that its create was done: what the
    // overhead would have been understated by with this tool's own clock as "bound".
    latency.insert(
        "pod_bound_to_create_answered_by_bench".into(),
        percentiles(bench_ack_lag),
    );

    let mut correctness = BTreeMap::new();
    let j = |v: usize| serde_json::json!(v);
    correctness.insert(
        "pods_with_exactly_one_group".into(),
        j(groups_per_pod.values().filter(|v| v.len() == 1).count()),
    );
    correctness.insert("pods_without_group".into(), j(pods_without_group));
    correctness.insert("duplicate_groups".into(), j(duplicate_groups));
    correctness.insert("groups_not_matching_a_pod".into(), j(foreign_groups));
    correctness.insert("orphan_groups_after_delete".into(), j(orphans_left));
    correctness.insert("group_annotation_mismatches".into(), j(annotation_mismatch));
    correctness.insert(
        "create_replays".into(),
        serde_json::json!(final_stats.create_replays),
    );
    correctness.insert("delete_errors".into(), j(delete_errors.lock().len()));
    correctness.insert(
        "groups_per_pod".into(),
        serde_json::json!(if by_uid.is_empty() {
            0.0
        } else {
            final_stats
                .groups
                .iter()
                .filter(|g| g.pod_uid.as_deref().is_some_and(|u| by_uid.contains_key(u)))
                .count() as f64
                / by_uid.len() as f64
        }),
    );

    let peak = samples
        .lock()
        .iter()
        .chain([&proc_start, &proc_running, &proc_end])
        .fold(0.0f64, |m, s| m.max(s.peak_rss_mib));
    let mut daemon = BTreeMap::new();
    daemon.insert("at_start".to_string(), proc_start);
    daemon.insert("all_running".to_string(), proc_running);
    daemon.insert(
        "end".to_string(),
        ProcSample {
            peak_rss_mib: peak.max(proc_end.peak_rss_mib),
            ..proc_end
        },
    );
    daemon.insert(
        "used_during_run".to_string(),
        ProcSample {
            cpu_seconds: proc_end.cpu_seconds - proc_start.cpu_seconds,
            rss_mib: proc_end.rss_mib,
            peak_rss_mib: peak.max(proc_end.peak_rss_mib),
        },
    );
    daemon.insert(
        "create_phase".to_string(),
        ProcSample {
            cpu_seconds: proc_running.cpu_seconds - proc_start.cpu_seconds,
            rss_mib: proc_running.rss_mib,
            peak_rss_mib: proc_running.peak_rss_mib,
        },
    );

    let mut processes = BTreeMap::new();
    for (i, (name, _)) in others.iter().enumerate() {
        let (a, b, c) = (others_start[i], others_running[i], others_end[i]);
        let mut m = BTreeMap::new();
        m.insert(
            "create_phase".to_string(),
            ProcSample {
                cpu_seconds: b.cpu_seconds - a.cpu_seconds,
                rss_mib: b.rss_mib,
                peak_rss_mib: b.peak_rss_mib,
            },
        );
        m.insert(
            "used_during_run".to_string(),
            ProcSample {
                cpu_seconds: c.cpu_seconds - a.cpu_seconds,
                rss_mib: c.rss_mib,
                peak_rss_mib: c.peak_rss_mib,
            },
        );
        processes.insert((*name).to_string(), m);
    }

    let start_ts = audit_ts(run_start_us);
    let end_ts = audit_ts(end_us + 1);
    let mut k8s = BTreeMap::new();
    k8s.insert(
        "create_phase".to_string(),
        audit_counts(&env.audit_log, &start_ts, &audit_ts(hold_start_us))?,
    );
    k8s.insert(
        "hold".to_string(),
        audit_counts(
            &env.audit_log,
            &audit_ts(hold_start_us),
            &audit_ts(delete_start_us),
        )?,
    );
    k8s.insert(
        "delete_phase".to_string(),
        audit_counts(&env.audit_log, &audit_ts(delete_start_us), &end_ts)?,
    );
    let whole = audit_counts(&env.audit_log, &start_ts, &end_ts)?;
    let per_pod: BTreeMap<String, f64> = whole
        .iter()
        .map(|(k, v)| (k.clone(), *v as f64 / n as f64))
        .collect();
    let pod_writes: u64 = whole
        .iter()
        .filter(|(k, _)| {
            let mut it = k.split(' ');
            let (verb, res) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
            is_write(verb) && (res == "pods" || res.starts_with("pods/"))
        })
        .map(|(_, v)| *v)
        .sum();
    let pod_writes_per_pod = pod_writes as f64 / n as f64;
    k8s.insert("whole_run".to_string(), whole);

    let eci_calls = final_stats.calls_by_action();
    let eci_per_pod: BTreeMap<String, f64> = eci_calls
        .iter()
        .map(|(a, m)| (a.clone(), m.values().sum::<u64>() as f64 / n as f64))
        .collect();
    let throttled: u64 = final_stats
        .calls
        .iter()
        .filter(|c| c.outcome.starts_with("Throttling"))
        .map(|c| c.count)
        .sum();
    let plugins = plugin_latency(&final_metrics);
    let windows_end_us = pod_points
        .iter()
        .map(|p| p.bound_us + 1)
        .max()
        .unwrap_or(create_start_us)
        .max(last_group_us);
    let width_us = windows::window_width_us(windows_end_us - create_start_us);
    let create_phase_windows = CreateWindows {
        width_ms: width_us as f64 / 1000.0,
        windows: windows::build_windows(
            create_start_us,
            windows_end_us,
            width_us,
            &pod_points,
            &audit_request_points(&env.audit_log, create_start_us, windows_end_us),
            &sched_names,
            &sched.lock().samples,
        ),
        processes: sched_names,
    };

    let report_wo_targets = Report {
        setup: serde_json::json!({
            "pods": n,
            "rate_offered": args.rate,
            "backlog": args.backlog,
            "concurrency": args.concurrency,
            "quotas": if args.real_quotas { "documented" } else { "lifted" },
            "emulator_timing": if args.emulator_profile.is_some() { "profile" } else if args.real_quotas { "default delays" } else { "instant" },
            "status_poll": args.status_poll.clone().unwrap_or_else(|| "daemon default".into()),
            "pod_workers": args.pod_workers,
            "hold_secs": args.hold_secs,
            "daemon_log": args.daemon_log,
            "pod_bound_from": if args.backlog {
                "n/a (--backlog)"
            } else if audit_bound.is_some() {
                "apiserver audit record of the create (or this tool's answer/watch if earlier)"
            } else {
                "this tool's create answer or watch (audit records did not pair up)"
            },
            "cores": std::thread::available_parallelism().map(|c| c.get()).unwrap_or(0),
            "load_average_at_start": load_start,
            "load_average_at_end": load_end,
        }),
        pods: n,
        running,
        failed,
        never_running: n - running,
        create_errors: t.create_errors.len(),
        timings_s: timings,
        throughput,
        latency_ms: latency,
        correctness,
        daemon,
        other_processes: processes,
        kubernetes_requests: k8s,
        kubernetes_requests_per_pod: per_pod,
        kubernetes_pod_writes_per_pod: pod_writes_per_pod,
        eci_calls,
        eci_calls_per_pod: eci_per_pod,
        eci_throttled: throttled,
        events_dropped: events_dropped(&final_metrics),
        status_polling_per_minute_while_running: polling,
        plugin_decision_latency: plugins,
        server_latency,
        create_phase_windows,
        daemon_memory,
        targets: Vec::new(),
    };
    if !t.create_errors.is_empty() {
        eprintln!("bench: first create error: {}", t.create_errors[0]);
    }
    let mut report = report_wo_targets;
    report.targets = targets(args, &report);
    Ok(report)
}

fn targets(args: &Args, r: &Report) -> Vec<Target> {
    let n = r.pods;
    let full = n >= 10_000;
    let num = |k: &str| {
        r.correctness
            .get(k)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(u64::MAX)
    };
    let mut v = Vec::new();
    let correct = r.running == n
        && r.failed == 0
        && r.create_errors == 0
        && num("duplicate_groups") == 0
        && num("pods_without_group") == 0
        && num("orphan_groups_after_delete") == 0
        && num("groups_not_matching_a_pod") == 0;
    v.push(Target {
        name: "all pods Running, no failures/duplicates/orphans".into(),
        target: "10,000 pods; 0 / 0 / 0".into(),
        measured: format!(
            "{}/{} Running; failed {}; dup {}; orphans {}",
            r.running,
            n,
            r.failed + r.create_errors,
            num("duplicate_groups"),
            num("orphan_groups_after_delete")
        ),
        pass: if !correct {
            Some(false)
        } else {
            full.then_some(true)
        },
        note: if full {
            String::new()
        } else {
            format!("run with --pods 10000 for the target (this run: {n})")
        },
    });
    let to_create = r
        .throughput
        .get("pods_per_s_to_create_container_group")
        .copied()
        .unwrap_or(0.0);
    let lifted = !args.real_quotas && args.emulator_profile.is_none();
    v.push(Target {
        name: if args.backlog {
            "throughput to CreateContainerGroup issued (quotas lifted; --backlog: daemon alone, from /readyz)".into()
        } else {
            "throughput to CreateContainerGroup issued (quotas lifted)".into()
        },
        target: ">= 1,000 pods/s".into(),
        measured: format!("{to_create:.0} pods/s"),
        pass: (lifted && args.rate == 0.0).then_some(to_create >= 1000.0),
        note: if lifted && args.rate == 0.0 {
            String::new()
        } else {
            "needs quotas lifted and --rate 0".into()
        },
    });
    v.push(Target {
        name: "throttling errors with real quotas".into(),
        target: "0".into(),
        measured: r.eci_throttled.to_string(),
        pass: args.real_quotas.then_some(r.eci_throttled == 0),
        note: if args.real_quotas {
            String::new()
        } else {
            "needs --real-quotas".into()
        },
    });
    let p99 = r
        .latency_ms
        .get("pod_bound_to_create_container_group")
        .and_then(|p| p.as_ref())
        .map(|p| p.p99_ms);
    let at_500 = (args.rate - 500.0).abs() < 1e-9;
    v.push(Target {
        name: "daemon overhead p99 (bound -> CreateContainerGroup)".into(),
        target: "<= 20 ms at 500 pods/s".into(),
        measured: p99.map_or("n/a".into(), |p| format!("{p:.1} ms")),
        pass: (at_500 && lifted).then(|| p99.is_some_and(|p| p <= 20.0)),
        note: if at_500 && lifted {
            String::new()
        } else {
            "needs --rate 500, quotas lifted".into()
        },
    });
    let worst_poll = r
        .status_polling_per_minute_while_running
        .iter()
        .map(|(a, per_min)| {
            let quota = vnode_eci::Action::from_name(a)
                .map(|a| a.documented_quota_per_minute())
                .unwrap_or(u32::MAX);
            (a.clone(), *per_min, quota)
        })
        .max_by(|x, y| (x.1 / x.2 as f64).total_cmp(&(y.1 / y.2 as f64)));
    // A quota counted per minute is judged over a minute at least: a shorter hold's count is
    // scaled up, so a burst inside it (a sweep lists every group: 500 pages at 10,000, once
    // per 5 minutes or when the poller misses a group) reads as if it repeated all minute.
    let hold_secs = r.timings_s.get("hold").copied().unwrap_or(0.0);
    let minute_window = hold_secs >= 59.5;
    if let Some((action, per_min, quota)) = worst_poll {
        v.push(Target {
            name: format!("status polling with {n} pods Running"),
            target: "within the documented per-minute quota".into(),
            measured: format!("{action}: {per_min:.0}/min of {quota}/min"),
            pass: if !minute_window {
                None
            } else if full {
                Some(per_min <= quota as f64)
            } else if per_min > quota as f64 {
                Some(false)
            } else {
                None
            },
            note: match (full, minute_window) {
                (true, true) => String::new(),
                (true, false) => format!(
                    "needs --hold-secs 60: a per-minute quota is judged over a minute, this window was {hold_secs:.0} s"
                ),
                (false, _) => "target is stated at 10,000 pods".into(),
            },
        });
    }
    v.push(Target {
        name: "Kubernetes writes per pod (pods + subresources, no events)".into(),
        target: "<= 6".into(),
        measured: format!("{:.2}", r.kubernetes_pod_writes_per_pod),
        pass: Some(r.kubernetes_pod_writes_per_pod <= 6.0),
        note: "creation and deletion by this tool excluded (audit user vnode-bench)".into(),
    });
    let peak = r.daemon.get("end").map_or(0.0, |s| s.peak_rss_mib);
    v.push(Target {
        name: "daemon peak RSS".into(),
        target: "<= 200 MiB at 10,000 pods".into(),
        measured: format!("{peak:.1} MiB"),
        pass: if full {
            Some(peak <= 200.0)
        } else if peak > 200.0 {
            Some(false)
        } else {
            None
        },
        note: if full {
            String::new()
        } else {
            format!("at {n} pods")
        },
    });
    v
}

fn print_summary(r: &Report) {
    println!();
    println!(
        "vnode bench pods: {} pods, quotas {}, offered rate {}",
        r.pods,
        r.setup["quotas"].as_str().unwrap_or("?"),
        if r.setup["backlog"].as_bool() == Some(true) {
            "none (--backlog: all pods existed before the daemon started)".into()
        } else {
            match r.setup["rate_offered"].as_f64() {
                Some(x) if x > 0.0 => format!("{x} pods/s"),
                _ => "unpaced".into(),
            }
        }
    );
    println!("{:<52} {:>14}", "measurement", "value");
    let row = |k: &str, v: String| println!("{k:<52} {v:>14}");
    row(
        "pods Running / failed / create errors",
        format!("{}/{}/{}", r.running, r.failed, r.create_errors),
    );
    for (k, v) in &r.throughput {
        row(k, format!("{v:.1}"));
    }
    for (k, v) in &r.timings_s {
        row(&format!("{k}, s"), format!("{v:.2}"));
    }
    for (k, p) in &r.latency_ms {
        match p {
            Some(p) => row(
                &format!("{k}, ms p50/p95/p99"),
                format!("{:.1}/{:.1}/{:.1}", p.p50_ms, p.p95_ms, p.p99_ms),
            ),
            None => row(&format!("{k}, ms"), "n/a".into()),
        }
    }
    if let Some(s) = r.daemon.get("used_during_run") {
        row(
            "daemon CPU-seconds during the run",
            format!("{:.2}", s.cpu_seconds),
        );
        row(
            "daemon CPU-ms per pod",
            format!("{:.2}", s.cpu_seconds * 1000.0 / r.pods as f64),
        );
        row("daemon peak RSS, MiB", format!("{:.1}", s.peak_rss_mib));
    }
    let m = &r.daemon_memory.peak;
    row(
        "daemon RSS peak sampled: at s (phase), anon/file/shmem MiB",
        format!(
            "{:.1} ({}), {:.1}/{:.1}/{:.1}",
            m.t_s, r.daemon_memory.peak_phase, m.anon_mib, m.file_mib, m.shmem_mib
        ),
    );
    if let Some(s) = r.daemon.get("create_phase") {
        row(
            "daemon CPU-seconds, create phase",
            format!("{:.2}", s.cpu_seconds),
        );
    }
    for (name, m) in &r.other_processes {
        if let (Some(c), Some(u)) = (m.get("create_phase"), m.get("used_during_run")) {
            row(
                &format!("{name} CPU-s create phase / whole run"),
                format!("{:.2}/{:.2}", c.cpu_seconds, u.cpu_seconds),
            );
        }
    }
    row(
        "load average at start / end (1 min)",
        format!(
            "{:.2}/{:.2}",
            r.setup["load_average_at_start"][0].as_f64().unwrap_or(0.0),
            r.setup["load_average_at_end"][0].as_f64().unwrap_or(0.0)
        ),
    );
    row(
        "Kubernetes pod writes per pod (no events)",
        format!("{:.2}", r.kubernetes_pod_writes_per_pod),
    );
    for (k, v) in &r.kubernetes_requests_per_pod {
        row(&format!("  k8s {k} /pod"), format!("{v:.2}"));
    }
    for (k, v) in &r.eci_calls_per_pod {
        row(&format!("  ECI {k} /pod"), format!("{v:.2}"));
    }
    row("ECI throttling errors", r.eci_throttled.to_string());
    row(
        "pod events dropped: all / daemon decisions",
        format!("{}/{}", r.events_dropped.all, r.events_dropped.decisions),
    );
    for (k, v) in &r.status_polling_per_minute_while_running {
        row(&format!("  {k} /min while Running"), format!("{v:.0}"));
    }
    for (k, h) in &r.plugin_decision_latency {
        let f = |x: Option<f64>| x.map_or("?".into(), |x| format!("{x}"));
        row(
            &format!("plugin {k} ms mean / p50<= / p99<="),
            format!("{:.3}/{}/{}", h.mean_ms, f(h.p50_le_ms), f(h.p99_le_ms)),
        );
    }
    for (k, v) in &r.correctness {
        row(k, v.to_string());
    }
    for (name, s) in &r.server_latency {
        for (k, v) in s.rows(name) {
            row(&k, v);
        }
    }
    let w = &r.create_phase_windows;
    let slow = windows::slowest(&w.windows, 5);
    if !slow.is_empty() {
        println!();
        println!(
            "create phase in {} ms windows ({} with pods): the slowest, and the median window",
            w.width_ms,
            w.windows.iter().filter(|w| w.pods_bound > 0).count()
        );
        for s in slow {
            println!(
                "{}",
                windows::describe(&format!("+{:.1}s", s.start_ms / 1000.0), s)
            );
        }
        if let Some(m) = windows::median_window(&w.windows) {
            println!("{}", windows::describe("median", &m));
        }
    }
    println!();
    println!(
        "{:<58} {:<26} {:<40} result",
        "target", "wanted", "measured"
    );
    for t in &r.targets {
        let result = match t.pass {
            Some(true) => "PASS".to_string(),
            Some(false) => "FAIL".to_string(),
            None => "n/a".to_string(),
        };
        let note = if t.note.is_empty() {
            String::new()
        } else {
            format!(" ({})", t.note)
        };
        println!(
            "{:<58} {:<26} {:<40} {result}{note}",
            t.name, t.target, t.measured
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranks() {
        let p = percentiles((1..=100).map(f64::from).collect()).expect("non-empty");
        assert_eq!(p.p50_ms, 50.0);
        assert_eq!(p.p95_ms, 95.0);
        assert_eq!(p.p99_ms, 99.0);
        assert_eq!(p.max_ms, 100.0);
        assert!(percentiles(Vec::new()).is_none());
    }

    #[test]
    fn dropped_events_from_metrics_text() {
        let text = "# HELP vnode_events_dropped Pod events dropped\n\
            vnode_events_dropped_total 120\n\
            vnode_decision_events_dropped_total 3\n\
            vnode_eci_events_mirrored_total 9000\n";
        assert_eq!(
            events_dropped(text),
            EventsDropped {
                all: 120,
                decisions: 3
            }
        );
        assert_eq!(events_dropped(""), EventsDropped::default());
    }

    #[test]
    fn plugin_histogram_from_metrics_text() {
        let text = "# HELP x\n\
            vnode_plugin_decision_seconds_sum{kind=\"placement\",plugin=\"zone-spread@0.1.0\"} 0.02\n\
            vnode_plugin_decision_seconds_count{kind=\"placement\",plugin=\"zone-spread@0.1.0\"} 100\n\
            vnode_plugin_decision_seconds_bucket{le=\"0.0005\",kind=\"placement\",plugin=\"zone-spread@0.1.0\"} 90\n\
            vnode_plugin_decision_seconds_bucket{le=\"0.001\",kind=\"placement\",plugin=\"zone-spread@0.1.0\"} 99\n\
            vnode_plugin_decision_seconds_bucket{le=\"+Inf\",kind=\"placement\",plugin=\"zone-spread@0.1.0\"} 100\n";
        let m = plugin_latency(text);
        let h = m.get("placement zone-spread@0.1.0").expect("parsed");
        assert_eq!(h.count, 100.0);
        assert!((h.mean_ms - 0.2).abs() < 1e-9);
        assert_eq!(h.p50_le_ms, Some(0.5));
        assert_eq!(h.p99_le_ms, Some(1.0));
    }

    #[test]
    fn a_pod_decodes_to_the_few_fields_this_tool_reads() {
        let json = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "bench-000001",
                "namespace": "default",
                "uid": "u-1",
                "resourceVersion": "42",
                "labels": {"app": "vnode-bench"},
                "annotations": {GROUP_ANNOTATION: "eci-1", "vnode.io/zone": "cn-hangzhou-h"},
                "managedFields": [{"manager": "x", "operation": "Update"}],
            },
            "spec": {"nodeName": "vnode-bench", "containers": [{"name": "app", "image": "nginx"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        });
        let pod: BenchPod = serde_json::from_value(json).expect("decodes");
        assert_eq!(pod.metadata.name.as_deref(), Some("bench-000001"));
        assert_eq!(pod.metadata.uid.as_deref(), Some("u-1"));
        assert_eq!(pod.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(
            pod.metadata.annotations,
            Some(BTreeMap::from([(
                GROUP_ANNOTATION.to_string(),
                "eci-1".to_string()
            )]))
        );
        assert_eq!(pod.phase.as_deref(), Some("Running"));
        let bare: BenchPod = serde_json::from_str(r#"{"metadata":{"name":"p"}}"#).expect("decodes");
        assert!(bare.phase.is_none() && bare.metadata.annotations.is_none());
    }

    #[test]
    fn audit_records_pair_with_creates_in_commit_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("audit.jsonl");
        let line = |ts: &str, user: &str, verb: &str, sub: &str, code: u16| {
            format!(
                "{{\"ts\":\"{ts}\",\"user\":\"{user}\",\"verb\":\"{verb}\",\"resource\":\"pods\",\"subresource\":\"{sub}\",\"code\":{code}}}\n"
            )
        };
        // Records in file (timestamp) order; the second create committed first (rv 7).
        let text = [
            line("2026-11-26T10:00:00.000100Z", BENCH_USER, "create", "", 201),
            line("2026-11-26T10:00:00.000150Z", "vnode", "patch", "", 200),
            line("2026-11-26T10:00:00.000200Z", BENCH_USER, "create", "", 201),
            line("2026-11-26T10:00:00.000250Z", BENCH_USER, "create", "", 409),
            line("2026-11-26T10:00:00.000300Z", BENCH_USER, "get", "", 200),
        ]
        .concat();
        std::fs::write(&log, text).expect("write");
        let track = |rv: u64| PodTrack {
            acked_us: Some(1),
            created_rv: Some(rv),
            ..PodTrack::default()
        };
        let mut pods = HashMap::from([("a".to_string(), track(9)), ("b".to_string(), track(7))]);
        // Never answered: not paired.
        pods.insert("c".to_string(), PodTrack::default());
        let t0 = "2026-11-26T10:00:00Z"
            .parse::<jiff::Timestamp>()
            .expect("ts")
            .as_microsecond();
        let paired = audit_bound_times(&log, &pods).expect("pairs up");
        assert_eq!(paired.len(), 2);
        assert_eq!(paired["b"], t0 + 100);
        assert_eq!(paired["a"], t0 + 200);
        // One answered create more than records: no pairing at all.
        pods.insert("d".to_string(), track(11));
        assert!(audit_bound_times(&log, &pods).is_none());
    }

    #[test]
    fn proc_stat_parses_own_process() {
        let s = sample_proc(std::process::id(), 100.0).expect("own /proc");
        assert!(s.rss_mib > 0.0 && s.peak_rss_mib >= s.rss_mib);
        let status = std::fs::read_to_string("/proc/self/status").expect("own status");
        let m = MemorySample::parse(&status, 1.5).expect("own memory by kind");
        assert!(m.rss_mib > 0.0 && m.anon_mib > 0.0 && m.file_mib > 0.0);
        // RSS is the sum of the three kinds (read together, in KiB).
        assert!((m.anon_mib + m.file_mib + m.shmem_mib - m.rss_mib).abs() < 0.01);
    }

    #[test]
    fn the_memory_peak_is_placed_in_its_phase() {
        let at = |t_s: f64, rss_mib: f64| MemorySample {
            t_s,
            rss_mib,
            ..MemorySample::default()
        };
        let status =
            "VmRSS:\t  2048 kB\nRssAnon:\t 1024 kB\nRssFile:\t 768 kB\nRssShmem:\t 256 kB\n";
        assert_eq!(
            MemorySample::parse(status, 2.0),
            Some(MemorySample {
                t_s: 2.0,
                rss_mib: 2.0,
                anon_mib: 1.0,
                file_mib: 0.75,
                shmem_mib: 0.25,
            })
        );
        assert_eq!(MemorySample::parse("VmRSS:\t 1 kB\n", 0.0), None);
        let timeline = vec![
            at(-0.2, 40.0),
            at(1.0, 90.0),
            at(9.0, 150.0),
            at(20.0, 120.0),
        ];
        let m = DaemonMemory::new(timeline.clone(), 10.0, 70.0);
        assert_eq!((m.peak, m.peak_phase), (at(9.0, 150.0), "create"));
        let m = DaemonMemory::new(timeline.clone(), 5.0, 70.0);
        assert_eq!(m.peak_phase, "hold");
        let m = DaemonMemory::new(timeline, 5.0, 8.0);
        assert_eq!(m.peak_phase, "delete");
        assert_eq!(m.timeline.len(), 4);
    }
}
