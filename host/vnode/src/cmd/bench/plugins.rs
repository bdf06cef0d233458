//! `vnode bench plugins`: what a plugin decision costs, step by step.
//!
//! Reports, for the shipped defaults: the daemon's per-pod path (Kubernetes `Pod` → contract
//! types, then `PluginSlot::place` and `PluginSlot::translate` through the async API, exactly
//! as `EciPodPath` calls them) over the translator's golden corpus (`tests/golden`, every pod
//! that gets past the host's own checks) and over one realistic pod (two containers with
//! probes and env, an init container, a ConfigMap volume, labels, annotations, tolerations, a
//! spread constraint); the target, place + translate ≤ 50 µs p99, is judged on the corpus.
//! Next to it, what the target is up against: the **floor**, the same corpus through the same
//! path with do-nothing plugins (`plugins/fixtures/floor-*`, which answer a constant without
//! reading their input: what a decision costs before any plugin code runs), and the shipped
//! plugins' own code compiled into this binary (the SDK's decoder, the decision, the SDK's
//! encoder) on the same input bytes, its answers checked byte for byte against the
//! components'. Then placement and translation alone, instantiation, calls on prepared instances,
//! the same placement logic compiled natively, and the time from a file write to the new
//! version serving (target ≤ 1 s). Every row prints min/p50/p95/p99 and the load average is
//! printed before and after, because on a shared 2-vCPU machine the tail is mostly other
//! processes' scheduling. Paced rows sleep `--pace-us` between pods (a thread sleep, see
//! `pause`) and print the pause they measured.
//!
//! `--steps` adds a further paced corpus run through `PluginSlot::place_with_steps` and
//! `translate_with_steps`: p50/p99 of each host step of a call (take an instance, arm the
//! deadline, encode, Wasm call, decode, retire, return; `vnode_plugin_host::steps`). The
//! other runs use the production calls, which make no timing calls.
//!
//! `--profile PHASE --profile-seconds S` loops one phase and nothing else (for `perf record`;
//! set `VNODE_PLUGIN_PERFMAP=1` so perf can name the plugins' compiled code, and pass a build
//! of the plugin that keeps its name section with `--placement-wasm`/`--translator-wasm` so
//! the guest's functions have names too). For the `prepared-*` phases,
//! `VNODE_PERF_CONTROL=CTL,ACK` with `perf record -D -1 --control fifo:CTL,ACK` records only
//! the decision calls themselves (see `PerfControl`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1 as k;
use vnode_mapping::{placement_input, translator_input};
use vnode_plugin_host::contract::{PlacementContext, TranslateInput};
use vnode_plugin_host::steps::{STEPS, Step};
use vnode_plugin_host::{
    LoadedPlugin, PluginEngine, PluginKind, PluginLoader, PluginSlot, PluginSource, PluginWatcher,
    RuntimeConfig, WatchOptions, WatchTarget, builtin, samples, sha256_hex,
};

#[derive(clap::Args)]
pub struct Args {
    /// Decisions per measurement.
    #[arg(long, default_value_t = 5000)]
    pub iterations: usize,
    /// Pause between pods in the "paced" runs (a busy node places far fewer than 1000
    /// pods/s; the pause lets the background worker keep instances ready). The report prints
    /// the pause measured (a sleep is never shorter; the kernel's timer slack adds ~50 µs).
    #[arg(long, default_value_t = 1000)]
    pub pace_us: u64,
    /// Hot-reload rounds.
    #[arg(long, default_value_t = 5)]
    pub reload_rounds: usize,
    /// The translator's golden corpus (one directory per case holding `pod.yaml`); default:
    /// `tests/golden` of the source tree vnode was built from.
    #[arg(long)]
    pub corpus: Option<std::path::PathBuf>,
    /// Loop only this phase (for a profiler) instead of printing the report: `daemon`,
    /// `daemon-unpaced`, `convert` (these three over the corpus), `place`, `translate`,
    /// `instantiate-placement`, `instantiate-translator`, `prepared-place`,
    /// `prepared-translate`.
    #[arg(long, hide = true)]
    pub profile: Option<String>,
    /// How long `--profile` loops.
    #[arg(long, hide = true, default_value_t = 10)]
    pub profile_seconds: u64,
    /// Instances each plugin version keeps prepared (the daemon's default: 8); for sizing
    /// experiments.
    #[arg(long)]
    pub warm_instances: Option<usize>,
    /// Print only the corpus rows (paced, its tail attribution, back-to-back) and stop: a
    /// quicker run for interleaved A/B comparisons.
    #[arg(long, hide = true)]
    pub corpus_only: bool,
    /// Also split the paced corpus's place and translate into the host's steps (take an
    /// instance, arm the deadline, encode, Wasm call, decode, retire, return …): a further
    /// paced run with a timestamp between steps. Off by default; the other rows never time
    /// steps.
    #[arg(long)]
    pub steps: bool,
    /// Benchmark this placement component instead of the built-in zone-spread (e.g. a build
    /// with a name section, so `perf report` names its functions).
    #[arg(long, hide = true)]
    pub placement_wasm: Option<std::path::PathBuf>,
    /// Benchmark this translator component instead of the built-in translator-default.
    #[arg(long, hide = true)]
    pub translator_wasm: Option<std::path::PathBuf>,
}

struct Stats {
    min: Duration,
    p50: Duration,
    p95: Duration,
    p99: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    if samples.is_empty() {
        samples.push(Duration::ZERO);
    }
    let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        min: samples[0],
        p50: pick(0.50),
        p95: pick(0.95),
        p99: pick(0.99),
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn header() {
    println!(
        "{:<60} {:>10} {:>10} {:>10} {:>10}",
        "step", "min", "p50", "p95", "p99"
    );
}

fn row(name: &str, s: &Stats, note: &str) {
    println!(
        "{name:<60} {:>10} {:>10} {:>10} {:>10}  {note}",
        us(s.min),
        us(s.p50),
        us(s.p95),
        us(s.p99)
    );
}

/// `/proc/loadavg`'s three averages, or "unknown".
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

fn time_n(
    n: usize,
    pace: Option<Duration>,
    mut f: impl FnMut() -> Result<()>,
) -> Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        if let Some(p) = pace {
            std::thread::sleep(p);
        }
        let t = Instant::now();
        f()?;
        out.push(t.elapsed());
    }
    Ok(out)
}

/// Pauses the calling task for `pace` and returns the pause it got. A plain sleep of the
/// thread, not `tokio::time::sleep`: tokio's timer has a 1 ms granularity and rounds up, so a
/// 300 µs sleep paused 1.09–1.11 ms at p50 and 2.1 ms at p95, and a 1000 µs one 2.1 ms at
/// p50. The bench's default of 1000 µs keeps the pause the figures of sessions up to 11 were
/// measured with (≈ 1.1 ms at p50). Blocking the worker is fine here: the bench's task is the
/// only work on its runtime, and the point is that the thread sits idle like a node's between
/// pods. The task then yields once (before the pod's clock starts), so each pod starts in a
/// fresh poll as a pod that wakes the daemon does: otherwise the task's cooperative budget (128
/// operations per poll) ran out every 64th pod and that pod's permit acquire was made to
/// yield, ~50 µs in `--steps`' "enter" at p99.
async fn pause(pace: Duration) -> Duration {
    let started = Instant::now();
    std::thread::sleep(pace);
    tokio::task::yield_now().await;
    started.elapsed()
}

/// What a corpus loop does before each pod: the pause of a paced run (returned), or, back to
/// back, a yield only, so each pod still starts in a fresh poll as in the daemon, where a pod's
/// work awaits the API servers between decisions. Without it the task's cooperative budget ran
/// out every 64th pod and that pod's permit acquire was made to yield inside the timed region
/// (~1.6 % of samples, at the p99).
async fn between_pods(pace: Option<Duration>) -> Option<Duration> {
    match pace {
        Some(pace) => Some(pause(pace).await),
        None => {
            tokio::task::yield_now().await;
            None
        }
    }
}

/// `note`, then the pause a paced row was measured with (nothing more for a back-to-back row).
fn with_pause(note: &str, pauses: &[Duration]) -> String {
    match pause_note(pauses) {
        pause if pause.is_empty() => note.to_owned(),
        pause => format!("{pause}; {note}"),
    }
}

/// The note printed next to a paced row: the pause it was measured with.
fn pause_note(pauses: &[Duration]) -> String {
    if pauses.is_empty() {
        return String::new();
    }
    let s = stats(pauses.to_vec());
    format!("pause between calls: p50 {}, p99 {}", us(s.p50), us(s.p99))
}

fn load(loader: &PluginLoader, bytes: &[u8], kind: PluginKind) -> Result<Arc<LoadedPlugin>> {
    Ok(loader.load_blocking(
        &PluginSource {
            bytes: bytes.to_vec(),
            path: None,
        },
        Some(kind),
        "",
    )?)
}

pub async fn run(args: Args) -> Result<()> {
    tokio::task::spawn_blocking(move || bench(args)).await?
}

/// The realistic pod as the daemon receives it from the API server (the Kubernetes form of
/// `samples::placement_sample` / `samples::translate_sample`), and the ConfigMap it mounts.
const SAMPLE_POD_YAML: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  namespace: default
  name: web-7d4b9c6f5-x2x9k
  uid: 5f0c2a1e-3b7d-4c1e-9a55-0d2b7c9e4f11
  creationTimestamp: "2026-11-25T10:00:00Z"
  labels: {app: web, pod-template-hash: 7d4b9c6f5, team: storefront}
  annotations:
    kubernetes.io/psp: restricted
    prometheus.io/scrape: "true"
    prometheus.io/port: "9090"
  ownerReferences:
  - {apiVersion: apps/v1, kind: ReplicaSet, name: web-7d4b9c6f5, uid: 0b4f7d1c-0000-4000-8000-000000000001, controller: true}
spec:
  nodeName: vnode-eci
  serviceAccountName: web
  restartPolicy: Always
  dnsPolicy: ClusterFirst
  terminationGracePeriodSeconds: 30
  priority: 0
  nodeSelector: {type: virtual-kubelet}
  tolerations:
  - {key: virtual-kubelet.io/provider, operator: Exists, effect: NoSchedule}
  topologySpreadConstraints:
  - topologyKey: topology.kubernetes.io/zone
    maxSkew: 1
    whenUnsatisfiable: ScheduleAnyway
    labelSelector: {matchLabels: {app: web}}
  initContainers:
  - name: migrate
    image: registry.cn-hangzhou.aliyuncs.com/shop/migrate:1.42.0
    command: [/app/migrate]
    resources:
      requests: {cpu: 250m, memory: 256Mi}
      limits: {cpu: 500m, memory: 256Mi}
  containers:
  - name: web
    image: registry.cn-hangzhou.aliyuncs.com/shop/web:1.42.0
    imagePullPolicy: IfNotPresent
    command: [/app/server]
    args: [--port=8080, --log-format=json]
    env:
    - {name: APP_ENV, value: production}
    - {name: DB_PASSWORD, value: s3cr3t-from-secret}
    - name: POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    ports: [{name: http, containerPort: 8080, protocol: TCP}]
    resources:
      requests: {cpu: 500m, memory: 1Gi}
      limits: {cpu: "1", memory: 1Gi}
    volumeMounts: [{name: config, mountPath: /etc/app, readOnly: true}]
    livenessProbe:
      httpGet: {path: /healthz, port: http}
      initialDelaySeconds: 5
      periodSeconds: 10
      timeoutSeconds: 1
      failureThreshold: 3
    readinessProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 5
  - name: envoy
    image: envoyproxy/envoy:v1.31.0
    imagePullPolicy: IfNotPresent
    command: [/app/server]
    args: [--port=8080, --log-format=json]
    env:
    - {name: APP_ENV, value: production}
    - {name: DB_PASSWORD, value: s3cr3t-from-secret}
    - name: POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    ports: [{name: http, containerPort: 8080, protocol: TCP}]
    resources:
      requests: {cpu: 250m, memory: 256Mi}
      limits: {cpu: 500m, memory: 256Mi}
    volumeMounts: [{name: config, mountPath: /etc/app, readOnly: true}]
    livenessProbe:
      httpGet: {path: /healthz, port: http}
      initialDelaySeconds: 5
      periodSeconds: 10
      timeoutSeconds: 1
      failureThreshold: 3
    readinessProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 5
  volumes:
  - name: config
    configMap: {name: web-config, defaultMode: 420}
"#;

const SAMPLE_CONFIG_MAP_YAML: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {namespace: default, name: web-config}
data:
  app.yaml: |
    listen: 0.0.0.0:8080
    log_level: info
"#;

/// What the daemon holds when a pod arrives: the pod, its fetched references, the node's
/// placement context and defaults.
#[derive(Clone)]
struct DaemonInputs {
    /// The corpus case (its directory name), or `sample`.
    name: String,
    pod: k::Pod,
    refs: translator_input::Referenced,
    context: PlacementContext,
    node: vnode_plugin_host::contract::NodeDefaults,
}

impl DaemonInputs {
    fn new() -> Result<DaemonInputs> {
        let pod: k::Pod = serde_yaml::from_str(SAMPLE_POD_YAML).context("sample pod")?;
        let cm: k::ConfigMap =
            serde_yaml::from_str(SAMPLE_CONFIG_MAP_YAML).context("sample ConfigMap")?;
        let mut refs = translator_input::Referenced::default();
        refs.config_maps.insert("web-config".into(), cm);
        let (_, context) = samples::placement_sample();
        Ok(DaemonInputs {
            name: "sample".into(),
            pod,
            refs,
            context,
            node: samples::sample_node_defaults(),
        })
    }

    /// The host-side conversions of one pod (what `EciPodPath` does around the two calls):
    /// `Pod` → `pod-view`, `Pod` + references → `resolved-pod`.
    fn convert(
        &self,
    ) -> Result<(
        vnode_plugin_host::contract::PodView,
        PlacementContext,
        k8s_resolved::Pod,
    )> {
        let view = placement_input::pod_view(&self.pod)?;
        let resolved = translator_input::resolve(&self.pod, &self.refs, "vnode-eci")?;
        Ok((view, self.context.clone(), resolved.pod))
    }

    fn translate_input(
        &self,
        pod: k8s_resolved::Pod,
        attempt: vnode_plugin_host::contract::Attempt,
    ) -> TranslateInput {
        TranslateInput {
            pod,
            attempt,
            node: self.node.clone(),
            config: String::new(),
        }
    }
}

/// The resolved pod's contract type, named for readability.
mod k8s_resolved {
    pub type Pod = vnode_plugin_host::contract::ResolvedPod;
}

/// `tests/golden` of the source tree this binary was built from (the translator's golden
/// corpus), unless `--corpus` says otherwise.
fn default_corpus_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden")
}

/// The translator's golden corpus (`<dir>/<case>/pod.yaml`: the pod plus the ConfigMaps and
/// Secrets it references) as the daemon would hold it, and how many cases the host refuses
/// before any plugin call (e.g. a missing mandatory ConfigMap).
fn load_corpus(dir: &std::path::Path) -> Result<(Vec<DaemonInputs>, usize)> {
    use serde::Deserialize;
    let mut cases: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the golden corpus {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path().join("pod.yaml")))
        .filter(|p| p.exists())
        .collect();
    cases.sort();
    let (_, context) = samples::placement_sample();
    let node = samples::sample_node_defaults();
    let mut pods = Vec::new();
    let mut refused_by_host = 0;
    for path in &cases {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut pod = None;
        let mut refs = translator_input::Referenced::default();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc)
                .with_context(|| format!("parsing {}", path.display()))?;
            match value.get("kind").and_then(|k| k.as_str()) {
                Some("Pod") => pod = Some(serde_yaml::from_value::<k::Pod>(value)?),
                Some("ConfigMap") => {
                    let cm: k::ConfigMap = serde_yaml::from_value(value)?;
                    refs.config_maps
                        .insert(cm.metadata.name.clone().unwrap_or_default(), cm);
                }
                Some("Secret") => {
                    let s: k::Secret = serde_yaml::from_value(value)?;
                    refs.secrets
                        .insert(s.metadata.name.clone().unwrap_or_default(), s);
                }
                other => anyhow::bail!("{}: unexpected kind {other:?}", path.display()),
            }
        }
        let pod = pod.with_context(|| format!("{}: no Pod document", path.display()))?;
        for audience in translator_input::references(&pod).token_audiences {
            let token = format!("eyJhbGciOiJSUzI1NiJ9.bench-token-for-{audience}.sig");
            refs.service_account_tokens.insert(audience, token);
        }
        let inputs = DaemonInputs {
            name: path
                .parent()
                .and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            pod,
            refs,
            context: context.clone(),
            node: node.clone(),
        };
        if inputs.convert().is_ok() {
            pods.push(inputs);
        } else {
            refused_by_host += 1;
        }
    }
    anyhow::ensure!(
        !pods.is_empty(),
        "the golden corpus {} has no pod that reaches the plugins",
        dir.display()
    );
    Ok((pods, refused_by_host))
}

fn bench(args: Args) -> Result<()> {
    let n = args.iterations.max(100);
    let pace = Duration::from_micros(args.pace_us);
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let defaults = RuntimeConfig::default();
    let warm_engine = PluginEngine::new(RuntimeConfig {
        warm_instances: args.warm_instances.unwrap_or(defaults.warm_instances),
        ..defaults
    })?;
    let cold_engine = PluginEngine::new(RuntimeConfig {
        warm_instances: 0,
        ..RuntimeConfig::default()
    })?;
    let warm = PluginLoader::new(warm_engine.clone(), None);
    let cold = PluginLoader::new(cold_engine, None);
    let read = |path: &Option<std::path::PathBuf>, builtin: &'static [u8]| -> Result<Vec<u8>> {
        match path {
            Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display())),
            None => Ok(builtin.to_vec()),
        }
    };
    let placement_bytes = read(&args.placement_wasm, builtin::ZONE_SPREAD)?;
    let translator_bytes = read(&args.translator_wasm, builtin::TRANSLATOR_DEFAULT)?;
    let t = Instant::now();
    let placement = load(&warm, &placement_bytes, PluginKind::Placement)?;
    let load_placement = t.elapsed();
    let t = Instant::now();
    let translator = load(&warm, &translator_bytes, PluginKind::Translator)?;
    let load_translator = t.elapsed();
    let inputs = DaemonInputs::new()?;
    let corpus_dir = args.corpus.clone().unwrap_or_else(default_corpus_dir);
    let (corpus, refused_by_host) = load_corpus(&corpus_dir)?;
    let (pod, ctx) = samples::placement_sample();
    let input = samples::translate_sample();

    if let Some(phase) = &args.profile {
        return profile(
            phase,
            Duration::from_secs(args.profile_seconds),
            &placement,
            &translator,
            &corpus,
            pace,
        );
    }

    println!(
        "vnode bench plugins: {n} decisions per row; {cpus} CPUs, load average {} (1/5/15 min) at start; pooling allocator: {}",
        load_average(),
        warm_engine.uses_pooling()
    );
    println!(
        "load (compile + link + init + smoke decision, no cache): zone-spread {} KB in {:.1} ms, translator-default {} KB in {:.1} ms",
        placement_bytes.len() / 1024,
        load_placement.as_secs_f64() * 1e3,
        translator_bytes.len() / 1024,
        load_translator.as_secs_f64() * 1e3
    );
    println!();
    header();

    // The headline: exactly what the daemon does per pod, paced like a busy node, over the
    // translator's golden corpus.
    let target = Duration::from_micros(50);
    let verdict = |s: &Stats| {
        format!(
            "target ≤ {} p99: {}",
            us(target),
            if s.p99 <= target { "MET" } else { "NOT MET" }
        )
    };
    let headline = daemon_path(
        PluginSlot::new(placement.clone()),
        PluginSlot::new(translator.clone()),
        &corpus,
        n,
        Some(pace),
    )?;
    println!(
        "golden corpus {}: {} pods reach the plugins, {refused_by_host} refused by the host before any call",
        corpus_dir.display(),
        corpus.len()
    );
    row(
        "CORPUS, DAEMON PATH: convert + place + translate (paced)",
        &headline.total,
        &pause_note(&headline.pauses),
    );
    row(
        "  of which Pod → contract types (host, vnode-mapping)",
        &headline.convert,
        "",
    );
    row(
        "  of which place + translate (THE PLUGIN DECISIONS)",
        &headline.plugins,
        &verdict(&headline.plugins),
    );
    row("  of which PluginSlot::place", &headline.place, "");
    row("  of which PluginSlot::translate", &headline.translate, "");
    headline.print_tail();
    daemon_path_with(
        PluginSlot::new(placement.clone()),
        PluginSlot::new(translator.clone()),
        &corpus,
        n,
        Some(pace),
        Observe::ThreadCounters,
    )?
    .print_disturbances();
    if args.steps {
        daemon_path_with(
            PluginSlot::new(placement.clone()),
            PluginSlot::new(translator.clone()),
            &corpus,
            n,
            Some(pace),
            Observe::Steps,
        )?
        .print_steps();
    }
    println!(
        "  warm pool misses so far (decisions that instantiated inline): placement {}, translator {}",
        placement.inline_instantiations(),
        translator.inline_instantiations()
    );
    let unpaced = daemon_path(
        PluginSlot::new(placement.clone()),
        PluginSlot::new(translator.clone()),
        &corpus,
        n,
        None,
    )?;
    row(
        "corpus, daemon path back-to-back (no pause)",
        &unpaced.total,
        "warm caches",
    );
    row(
        "  of which place + translate",
        &unpaced.plugins,
        &verdict(&unpaced.plugins),
    );
    // What the target is up against: the same corpus through the same path with plugins that
    // do nothing, and the shipped plugins' own code without Wasm and without the host.
    println!(
        "what no plugin can go below, and the plugins' code without Wasm (same corpus and pause):"
    );
    match floor_plugins(&warm)? {
        Some((floor_placement, floor_translator)) => {
            for (label, pace) in [
                (
                    "floor: do-nothing plugins, place + translate (paced)",
                    Some(pace),
                ),
                ("floor: do-nothing plugins, back-to-back", None),
            ] {
                let floor = daemon_path(
                    PluginSlot::new(floor_placement.clone()),
                    PluginSlot::new(floor_translator.clone()),
                    &corpus,
                    n,
                    pace,
                )?;
                row(
                    label,
                    &floor.plugins,
                    &with_pause(
                        "host steps + Wasm calls; the plugins answer a constant, never reading the input",
                        &floor.pauses,
                    ),
                );
            }
        }
        None => println!(
            "  (floor rows skipped: the floor fixtures are not at {} and {}; they exist in the build tree)",
            builtin::FLOOR_PLACEMENT_PATH,
            builtin::FLOOR_TRANSLATOR_PATH
        ),
    }
    let shipped = args.placement_wasm.is_none() && args.translator_wasm.is_none();
    let native_cases = native_corpus(&placement, &translator, &corpus, shipped)?;
    let native_note = if shipped {
        "zone-spread + translator-default via the SDK, same input bytes and answers; no Wasm, no host"
    } else {
        "zone-spread + translator-default natively (not the --*-wasm plugins); no Wasm, no host"
    };
    for (label, pace) in [
        (
            "plugins' code natively: decode + decide + encode (paced)",
            Some(pace),
        ),
        ("plugins' code natively, back-to-back", None),
    ] {
        let (native, pauses) = native_path(&native_cases, n, pace)?;
        row(label, &native, &with_pause(native_note, &pauses));
    }
    if args.corpus_only {
        println!("load average at end: {}", load_average());
        return Ok(());
    }
    let sample = daemon_path(
        PluginSlot::new(placement.clone()),
        PluginSlot::new(translator.clone()),
        std::slice::from_ref(&inputs),
        n,
        Some(pace),
    )?;
    row(
        "sample pod (2 containers + init), daemon path (paced)",
        &sample.total,
        &pause_note(&sample.pauses),
    );
    row("  of which Pod → contract types", &sample.convert, "");
    row(
        "  of which place + translate",
        &sample.plugins,
        &verdict(&sample.plugins),
    );
    println!();
    println!("diagnostics:");
    let (calls, pauses) = slot_calls(PluginSlot::new(placement.clone()), None, n, pace)?;
    row(
        "placement alone: PluginSlot::place (paced)",
        &stats(calls),
        &pause_note(&pauses),
    );
    let (calls, pauses) = slot_calls(PluginSlot::new(translator.clone()), Some(()), n, pace)?;
    row(
        "translation alone: PluginSlot::translate (paced)",
        &stats(calls),
        &pause_note(&pauses),
    );
    row(
        "instantiate placement (store + instance, no call)",
        &stats(placement.measure_instantiation(n, false)?),
        "zone-spread",
    );
    row(
        "instantiate translator (store + instance, no call)",
        &stats(translator.measure_instantiation(n, false)?),
        "translator-default",
    );
    row(
        "placement call on a prepared instance",
        &stats(placement.measure_prepared_calls(n, Some((&pod, &ctx)), None)?),
        "lower + run + lift",
    );
    row(
        "translation call on a prepared instance",
        &stats(translator.measure_prepared_calls(n, None, Some(&input))?),
        "lower + run + lift",
    );
    let steps = placement.measure_placement_steps(n, &pod, &ctx)?;
    for (i, name) in [
        "placement steps inline: new store (host state + WASI)",
        "placement steps inline: instantiate",
        "placement steps inline: call (lower + run + lift)",
        "placement steps inline: drop store (free + slot reset)",
    ]
    .into_iter()
    .enumerate()
    {
        row(name, &stats(steps.iter().map(|s| s[i]).collect()), "");
    }
    let placement_cold = load(&cold, &placement_bytes, PluginKind::Placement)?;
    let translator_cold = load(&cold, &translator_bytes, PluginKind::Translator)?;
    row(
        "place + translate, instantiate inline (no warm pool)",
        &stats(time_n(n, None, || {
            placement_cold
                .place_blocking(&pod, ctx.clone())
                .context("placement call")?;
            translator_cold
                .translate_blocking(input.clone())
                .context("translate call")?;
            Ok(())
        })?),
        "blocking API, back-to-back",
    );

    // Native comparison: the same zone-spread logic compiled for the host.
    let (native_pod, native_ctx) = native::sample();
    row(
        "placement logic compiled natively (zone-spread)",
        &stats(time_n(n, None, || {
            std::hint::black_box(native::decide(&native_pod, native_ctx.clone()));
            Ok(())
        })?),
        "same code, no Wasm",
    );

    // Hot reload: file write → new version serving.
    println!();
    let reloads = reload_rounds(&warm, &placement, args.reload_rounds.max(1))?;
    let r = stats(reloads.clone());
    println!(
        "file write → new version serving ({} rounds, debounce {} ms): p50 {:.0} ms, max {:.0} ms — target ≤ 1 s: {}",
        reloads.len(),
        WatchOptions::default().debounce.as_millis(),
        r.p50.as_secs_f64() * 1e3,
        reloads
            .iter()
            .max()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3,
        if reloads.iter().all(|d| *d <= Duration::from_secs(1)) {
            "MET"
        } else {
            "NOT MET"
        }
    );
    println!("load average at end: {}", load_average());
    Ok(())
}

/// `rounds` hot reloads of the placement plugin through a watched file.
fn reload_rounds(
    loader: &PluginLoader,
    placement: &Arc<LoadedPlugin>,
    rounds: usize,
) -> Result<Vec<Duration>> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("placement.wasm");
    std::fs::write(&file, builtin::ZONE_SPREAD)?;
    let slot = Arc::new(PluginSlot::new(placement.clone()));
    let target = WatchTarget {
        slot: slot.clone(),
        plugin_file: file.clone(),
        config_file: None,
    };
    let _watcher = PluginWatcher::start(loader.clone(), target, WatchOptions::default())?;
    let mut reloads = Vec::new();
    for round in 0..rounds {
        let bytes = with_custom_section(builtin::ZONE_SPREAD, &format!("bench-{round}"));
        let want = sha256_hex(&bytes);
        let tmp = dir.path().join("placement.wasm.tmp");
        std::fs::write(&tmp, &bytes)?;
        let t = Instant::now();
        std::fs::rename(&tmp, &file)?;
        while slot.current().identity().sha256 != want {
            if t.elapsed() > Duration::from_secs(10) {
                anyhow::bail!("reload round {round} did not serve the new version within 10 s");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        reloads.push(t.elapsed());
    }
    Ok(reloads)
}

/// Loops one phase for `duration` (for `perf record`), then prints how many times it ran.
fn profile(
    phase: &str,
    duration: Duration,
    placement: &Arc<LoadedPlugin>,
    translator: &Arc<LoadedPlugin>,
    corpus: &[DaemonInputs],
    pace: Duration,
) -> Result<()> {
    let (pod, ctx) = samples::placement_sample();
    let input = samples::translate_sample();
    let mut perf_control = PerfControl::from_env()?;
    let cpu_before = ThreadCpu::read();
    let started = Instant::now();
    let mut rounds = 0usize;
    while started.elapsed() < duration {
        match phase {
            "daemon" | "daemon-unpaced" => {
                let pace = (phase == "daemon").then_some(pace);
                daemon_path(
                    PluginSlot::new(placement.clone()),
                    PluginSlot::new(translator.clone()),
                    corpus,
                    1000,
                    pace,
                )?;
                rounds += 1000;
            }
            "convert" => {
                for inputs in corpus {
                    std::hint::black_box(inputs.convert().ok());
                }
                rounds += corpus.len();
            }
            "place" => {
                placement.place_blocking(&pod, ctx.clone())?;
                rounds += 1;
            }
            "translate" => {
                translator.translate_blocking(input.clone())?;
                rounds += 1;
            }
            "instantiate-placement" => {
                placement.measure_instantiation(100, false)?;
                rounds += 100;
            }
            "instantiate-translator" => {
                translator.measure_instantiation(100, false)?;
                rounds += 100;
            }
            "prepared-place" => {
                placement.measure_prepared_calls_around(
                    64,
                    Some((&pod, &ctx)),
                    None,
                    &mut |on| perf_control.switch(on),
                )?;
                rounds += 64;
            }
            "prepared-translate" => {
                translator.measure_prepared_calls_around(64, None, Some(&input), &mut |on| {
                    perf_control.switch(on)
                })?;
                rounds += 64;
            }
            other => anyhow::bail!("unknown --profile phase {other:?}"),
        }
    }
    let elapsed = started.elapsed();
    let cpu = ThreadCpu::read().since(&cpu_before);
    println!(
        "{phase}: {rounds} rounds in {:.1} s ({:.1} µs per round)",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / rounds.max(1) as f64
    );
    cpu.print_per_round(rounds);
    Ok(())
}

/// CPU time of this process's threads, by what they are (from `/proc/self/task/*/stat`): the
/// `--profile` phases report CPU per round this way, which is steadier than wall time on a
/// loaded machine and shows what the warm-instance threads add.
#[derive(Default)]
struct ThreadCpu(std::collections::BTreeMap<&'static str, Duration>);

impl ThreadCpu {
    /// Linux reports thread times in USER_HZ ticks, 100 per second on every architecture
    /// the kernel ABI defines for user space.
    const TICK: Duration = Duration::from_millis(10);

    fn read() -> ThreadCpu {
        let mut by_kind = std::collections::BTreeMap::new();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return ThreadCpu(by_kind);
        };
        for task in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            let Some(super::ProcStat {
                name,
                cpu_ticks: ticks,
                ..
            }) = super::ProcStat::parse(&stat)
            else {
                continue;
            };
            let kind = if name.starts_with("vnode-plugin-wa") {
                "warm-instance threads"
            } else if name.starts_with("vnode-plugin-ep") {
                "epoch ticker"
            } else if name.starts_with("tokio-") {
                "runtime threads (the calls)"
            } else {
                "other threads"
            };
            *by_kind.entry(kind).or_insert(Duration::ZERO) += Self::TICK * ticks as u32;
        }
        ThreadCpu(by_kind)
    }

    /// CPU used since `before` (threads that ended meanwhile are not counted).
    fn since(&self, before: &ThreadCpu) -> ThreadCpu {
        ThreadCpu(
            self.0
                .iter()
                .map(|(k, v)| {
                    (
                        *k,
                        v.saturating_sub(before.0.get(k).copied().unwrap_or_default()),
                    )
                })
                .collect(),
        )
    }

    fn print_per_round(&self, rounds: usize) {
        let per_round = |d: Duration| d.as_secs_f64() * 1e6 / rounds.max(1) as f64;
        let total: Duration = self.0.values().sum();
        println!(
            "CPU per round: {:.1} µs in all threads (10 ms ticks from /proc/self/task)",
            per_round(total)
        );
        for (kind, cpu) in &self.0 {
            println!("  {kind}: {:.1} µs", per_round(*cpu));
        }
    }
}

/// `perf record --control fifo:CTL,ACK -D -1` support for the `prepared-*` profile phases:
/// with `VNODE_PERF_CONTROL=CTL,ACK` the profiler records only while the decision calls run,
/// not the instantiations that prepare them or the frees after them.
struct PerfControl(Option<(std::fs::File, std::io::BufReader<std::fs::File>)>);

impl PerfControl {
    fn from_env() -> Result<PerfControl> {
        let Some(spec) = std::env::var_os("VNODE_PERF_CONTROL") else {
            return Ok(PerfControl(None));
        };
        let spec = spec.to_string_lossy().into_owned();
        let (ctl, ack) = spec
            .split_once(',')
            .context("VNODE_PERF_CONTROL must be CTL_FIFO,ACK_FIFO")?;
        let ctl = std::fs::OpenOptions::new()
            .write(true)
            .open(ctl)
            .with_context(|| format!("opening {ctl}"))?;
        let ack = std::fs::File::open(ack).with_context(|| format!("opening {ack}"))?;
        Ok(PerfControl(Some((ctl, std::io::BufReader::new(ack)))))
    }

    /// Enables or disables the profiler's events and waits for its acknowledgement.
    fn switch(&mut self, on: bool) {
        use std::io::{BufRead, Write};
        let Some((ctl, ack)) = &mut self.0 else {
            return;
        };
        let command: &[u8] = if on { b"enable\n" } else { b"disable\n" };
        if ctl.write_all(command).is_ok() {
            let mut line = String::new();
            let _ = ack.read_line(&mut line);
        }
    }
}

/// Latencies of the daemon's per-pod work.
struct DaemonPath {
    convert: Stats,
    place: Stats,
    translate: Stats,
    plugins: Stats,
    total: Stats,
    /// place + translate per corpus case: (case, its own stats, its samples).
    by_case: Vec<(String, Stats, Vec<Duration>)>,
    /// place + translate of each sample with what the thread went through meanwhile (only
    /// when asked for: reading `/proc` between pods perturbs the caches a little).
    disturbances: Vec<(Duration, Disturbance)>,
    /// Each placement's and each translation's step durations (only when asked for).
    place_steps: Vec<[Option<Duration>; STEPS]>,
    translate_steps: Vec<[Option<Duration>; STEPS]>,
    /// The pause measured before each recorded pod (paced runs).
    pauses: Vec<Duration>,
}

/// What a corpus run records besides the latencies.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Observe {
    Nothing,
    /// Each sample's [`Disturbance`].
    ThreadCounters,
    /// Each call's host steps ([`StepTimes`]).
    Steps,
}

/// What happened to the measuring thread during one sample, from `/proc/thread-self`:
/// scheduler wait (`schedstat` run_delay), times it was scheduled in, minor page faults.
#[derive(Clone, Copy, Default)]
struct Disturbance {
    waited: Duration,
    switches: u64,
    faults: u64,
}

/// (run_delay ns, timeslices, minor faults) of the calling thread, if `/proc` tells.
fn thread_counters() -> Option<(u64, u64, u64)> {
    let sched = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let sched = super::SchedStat::parse(&sched)?;
    let (delay, slices) = (sched.wait_ns, sched.timeslices?);
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let minflt = super::ProcStat::parse(&stat)?.minor_faults;
    Some((delay, slices, minflt))
}

impl Disturbance {
    fn between(a: (u64, u64, u64), b: (u64, u64, u64)) -> Disturbance {
        Disturbance {
            waited: Duration::from_nanos(b.0.saturating_sub(a.0)),
            switches: b.1.saturating_sub(a.1),
            faults: b.2.saturating_sub(a.2),
        }
    }
}

impl DaemonPath {
    /// The host's steps of a paced placement and translation (`--steps`), p50 and p99 of
    /// each over the corpus.
    fn print_steps(&self) {
        println!(
            "  host steps (--steps: a further paced run with a timestamp between steps; {} placements, {} translations):",
            self.place_steps.len(),
            self.translate_steps.len()
        );
        println!(
            "    {:<44} {:>10} {:>10} {:>14} {:>14}",
            "step", "place p50", "place p99", "translate p50", "translate p99"
        );
        let column = |samples: &[[Option<Duration>; STEPS]], i: usize| -> (String, String) {
            let v: Vec<Duration> = samples.iter().filter_map(|s| s[i]).collect();
            if v.is_empty() {
                return ("-".into(), "-".into());
            }
            let s = stats(v);
            (us(s.p50), us(s.p99))
        };
        for (i, step) in Step::ALL.into_iter().enumerate() {
            let (p50, p99) = column(&self.place_steps, i);
            let (t50, t99) = column(&self.translate_steps, i);
            println!(
                "    {:<44} {p50:>10} {p99:>10} {t50:>14} {t99:>14}",
                step.label()
            );
        }
        let total = |samples: &[[Option<Duration>; STEPS]]| {
            stats(
                samples
                    .iter()
                    .map(|s| s.iter().flatten().sum::<Duration>())
                    .collect(),
            )
        };
        let (p, t) = (total(&self.place_steps), total(&self.translate_steps));
        println!(
            "    {:<44} {:>10} {:>10} {:>14} {:>14}",
            "all steps (one call)",
            us(p.p50),
            us(p.p99),
            us(t.p50),
            us(t.p99)
        );
    }

    /// Where the tail of place + translate comes from: the costliest cases by their own
    /// p50, and how many of the samples above the overall p99 each case contributed.
    /// The samples above the p99 against the rest: were they descheduled (another process,
    /// the warm worker, the epoch ticker took the core), did they page-fault? And the p99
    /// of the samples nothing happened to.
    fn print_disturbances(&self) {
        if self.disturbances.is_empty() {
            println!("  (no /proc/thread-self counters on this system)");
            return;
        }
        let p99 = self.plugins.p99;
        let summary = |what: &str, v: &[&(Duration, Disturbance)]| {
            let n = v.len().max(1) as f64;
            let switched = v.iter().filter(|(_, d)| d.switches > 0).count();
            let waited: f64 = v.iter().map(|(_, d)| d.waited.as_secs_f64()).sum::<f64>() / n;
            let faults: f64 = v.iter().map(|(_, d)| d.faults as f64).sum::<f64>() / n;
            println!(
                "    {what:<36} {:>5} samples: {:>5.1} % descheduled, mean scheduler wait {:>7.1} µs, mean minor faults {faults:.2}",
                v.len(),
                100.0 * switched as f64 / n,
                waited * 1e6,
            );
        };
        let (tail, rest): (Vec<_>, Vec<_>) = self.disturbances.iter().partition(|(d, _)| *d > p99);
        println!(
            "  tail attribution (a second paced run that reads thread counters between pods, so its times run above the headline's):"
        );
        summary("above the p99", &tail);
        summary("the rest", &rest);
        let quiet: Vec<Duration> = self
            .disturbances
            .iter()
            .filter(|(_, d)| d.switches == 0 && d.faults == 0)
            .map(|(t, _)| *t)
            .collect();
        let n = quiet.len();
        let s = stats(quiet);
        println!(
            "    undisturbed samples (not descheduled, no page fault): {n}, p50 {}, p99 {}",
            us(s.p50),
            us(s.p99)
        );
    }

    fn print_tail(&self) {
        let p99 = self.plugins.p99;
        let mut cases: Vec<&(String, Stats, Vec<Duration>)> = self.by_case.iter().collect();
        cases.sort_by_key(|(_, s, _)| std::cmp::Reverse(s.p50));
        let above: usize = cases
            .iter()
            .map(|(_, _, v)| v.iter().filter(|d| **d > p99).count())
            .sum();
        let medians: Vec<Duration> = cases.iter().map(|(_, s, _)| s.p50).collect();
        println!(
            "  tail: per-case p50 of place + translate ranges {} – {}; {above} samples above the p99 ({})",
            us(medians.last().copied().unwrap_or_default()),
            us(medians.first().copied().unwrap_or_default()),
            us(p99),
        );
        for (name, s, v) in cases.iter().take(5) {
            let over = v.iter().filter(|d| **d > p99).count();
            println!(
                "    {name:<40} p50 {:>10} p99 {:>10}  {over} of its {} samples above the overall p99",
                us(s.p50),
                us(s.p99),
                v.len()
            );
        }
        let rest: usize = cases
            .iter()
            .skip(5)
            .map(|(_, _, v)| v.iter().filter(|d| **d > p99).count())
            .sum();
        println!(
            "    (the other {} cases: {rest} samples above the overall p99)",
            cases.len().saturating_sub(5)
        );
    }
}

/// The do-nothing fixtures (`plugins/fixtures/floor-*`), loaded like any plugin; `None` when
/// the binary runs away from its build tree (they are not compiled into it).
fn floor_plugins(loader: &PluginLoader) -> Result<Option<(Arc<LoadedPlugin>, Arc<LoadedPlugin>)>> {
    let (Ok(placement), Ok(translator)) = (
        std::fs::read(builtin::FLOOR_PLACEMENT_PATH),
        std::fs::read(builtin::FLOOR_TRANSLATOR_PATH),
    ) else {
        return Ok(None);
    };
    Ok(Some((
        load(loader, &placement, PluginKind::Placement)?,
        load(loader, &translator, PluginKind::Translator)?,
    )))
}

/// One corpus pod as the plugins receive it: the encoded placement input, and the encoded
/// translate input when the placement plugin accepts the pod (with its first attempt).
#[derive(Clone)]
struct NativeCase {
    place: Vec<u8>,
    translate: Option<Vec<u8>>,
}

/// The exact input bytes of each corpus pod's calls (each version's configuration set, as
/// the slot does); the attempt comes from the loaded placement plugin, so the translator sees
/// what it sees in the daemon-path rows. When the loaded plugins are the shipped ones
/// (`same_code`), each native answer must be byte-for-byte the component's: the native rows
/// then time the very work the components do.
fn native_corpus(
    placement: &LoadedPlugin,
    translator: &LoadedPlugin,
    corpus: &[DaemonInputs],
    same_code: bool,
) -> Result<Vec<NativeCase>> {
    use vnode_plugin_host::contract::{
        Decision, decision_bytes, placement_input_bytes, translate_input_bytes,
        translate_result_bytes,
    };
    use vnode_plugin_sdk::codec;
    corpus
        .iter()
        .map(|inputs| {
            let (view, mut context, resolved) = inputs.convert()?;
            context.config = placement.config().to_owned();
            let place = placement_input_bytes(&view, &context);
            let decided = placement
                .place_blocking(&view, context)
                .with_context(|| format!("placing corpus case {}", inputs.name))?;
            anyhow::ensure!(
                !same_code
                    || codec::place::<zone_spread::ZoneSpread>(&place)
                        == decision_bytes(&decided.value),
                "corpus case {}: zone-spread compiled natively decides differently from its component",
                inputs.name
            );
            let translate = match decided.value {
                Decision::Accept(mut accepted) if !accepted.attempts.is_empty() => {
                    let mut input =
                        inputs.translate_input(resolved, accepted.attempts.swap_remove(0));
                    input.config = translator.config().to_owned();
                    let bytes = translate_input_bytes(&input);
                    if same_code {
                        let answer = translator
                            .translate_blocking(input)
                            .with_context(|| format!("translating corpus case {}", inputs.name))?;
                        anyhow::ensure!(
                            codec::translate::<translator_default::DefaultTranslator>(&bytes)
                                == translate_result_bytes(&answer.value),
                            "corpus case {}: translator-default compiled natively answers differently from its component",
                            inputs.name
                        );
                    }
                    Some(bytes)
                }
                _ => None,
            };
            Ok(NativeCase { place, translate })
        })
        .collect()
}

/// The shipped plugins' code compiled into this binary (the SDK's decoder, the decision, the
/// SDK's encoder: what the components' exports run), over `cases` like [`daemon_path`]: `n`
/// pods after 200 unrecorded ones, from a task on the command's runtime, one every `pace`.
fn native_path(
    cases: &[NativeCase],
    n: usize,
    pace: Option<Duration>,
) -> Result<(Stats, Vec<Duration>)> {
    use std::hint::black_box;
    use vnode_plugin_sdk::codec;
    let cases = cases.to_vec();
    let handle = tokio::runtime::Handle::current();
    let task = handle.spawn(async move {
        let (mut samples, mut pauses) = (Vec::with_capacity(n), Vec::new());
        for (i, case) in cases.iter().cycle().take(n + 200).enumerate() {
            if let Some(paused) = between_pods(pace).await
                && i >= 200
            {
                pauses.push(paused);
            }
            let started = Instant::now();
            let decision = codec::place::<zone_spread::ZoneSpread>(black_box(&case.place));
            black_box(decision);
            if let Some(input) = &case.translate {
                let request =
                    codec::translate::<translator_default::DefaultTranslator>(black_box(input));
                black_box(request);
            }
            if i >= 200 {
                samples.push(started.elapsed());
            }
        }
        (stats(samples), pauses)
    });
    Ok(handle.block_on(task)?)
}

/// Runs `n` pods (after 200 unrecorded ones), cycling through `pods`, the way `EciPodPath`
/// does (convert, place, translate the first attempt) through both slots' async API, from a
/// task on the command's multi-thread runtime, one pod every `pace` if given.
fn daemon_path(
    placement: PluginSlot,
    translator: PluginSlot,
    pods: &[DaemonInputs],
    n: usize,
    pace: Option<Duration>,
) -> Result<DaemonPath> {
    daemon_path_with(placement, translator, pods, n, pace, Observe::Nothing)
}

/// [`daemon_path`], optionally recording each sample's [`Disturbance`] or each call's steps.
fn daemon_path_with(
    placement: PluginSlot,
    translator: PluginSlot,
    pods: &[DaemonInputs],
    n: usize,
    pace: Option<Duration>,
    observe: Observe,
) -> Result<DaemonPath> {
    let pods = pods.to_vec();
    // One pod: it must be placed and translated. A corpus also holds pods the plugins refuse
    // (that is a decision too, and is timed like any other).
    let strict = pods.len() == 1;
    let handle = tokio::runtime::Handle::current();
    let task = handle.spawn(async move {
        let (mut convert, mut place, mut translate, mut plugins, mut total) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut by_case: Vec<Vec<Duration>> = vec![Vec::new(); pods.len()];
        let mut disturbances = Vec::new();
        let (mut place_steps, mut translate_steps, mut pauses) =
            (Vec::new(), Vec::new(), Vec::new());
        let steps = observe == Observe::Steps;
        for (i, inputs) in pods.iter().cycle().take(n + 200).enumerate() {
            let recorded = i >= 200;
            if let Some(paused) = between_pods(pace).await
                && recorded
            {
                pauses.push(paused);
            }
            let before = if observe == Observe::ThreadCounters {
                thread_counters()
            } else {
                None
            };
            let started = Instant::now();
            let (view, context, resolved) = inputs.convert()?;
            let converted = Instant::now();
            let decided = if steps {
                let (decided, times) = placement
                    .place_with_steps(view, context)
                    .await
                    .context("placement via PluginSlot::place_with_steps")?;
                if recorded {
                    place_steps.push(times.durations());
                }
                decided
            } else {
                placement
                    .place(view, context)
                    .await
                    .context("placement via PluginSlot::place")?
            };
            let placed = Instant::now();
            let attempt = match decided.value {
                vnode_plugin_host::contract::Decision::Accept(mut a) if !a.attempts.is_empty() => {
                    Some(a.attempts.swap_remove(0))
                }
                other if strict => anyhow::bail!("the sample pod was not accepted: {other:?}"),
                _ => None,
            };
            if let Some(attempt) = attempt {
                let input = inputs.translate_input(resolved, attempt);
                let request = if steps {
                    let (request, times) = translator
                        .translate_with_steps(input)
                        .await
                        .context("translation via PluginSlot::translate_with_steps")?;
                    if recorded {
                        translate_steps.push(times.durations());
                    }
                    request
                } else {
                    translator
                        .translate(input)
                        .await
                        .context("translation via PluginSlot::translate")?
                };
                if let (Err(e), true) = (request.value, strict) {
                    anyhow::bail!("the sample pod was not translated: {e:?}");
                }
            }
            let done = Instant::now();
            // Only the attribution run reads the counters (two `/proc` files per pod).
            if let (Some(a), true) = (before, recorded)
                && let Some(b) = thread_counters()
            {
                disturbances.push((done - converted, Disturbance::between(a, b)));
            }
            if recorded {
                convert.push(converted - started);
                place.push(placed - converted);
                translate.push(done - placed);
                plugins.push(done - converted);
                total.push(done - started);
                by_case[i % pods.len()].push(done - converted);
            }
        }
        let by_case = pods
            .iter()
            .zip(by_case)
            .map(|(p, v)| (p.name.clone(), stats(v.clone()), v))
            .collect();
        anyhow::Ok(DaemonPath {
            convert: stats(convert),
            place: stats(place),
            translate: stats(translate),
            plugins: stats(plugins),
            total: stats(total),
            by_case,
            disturbances,
            place_steps,
            translate_steps,
            pauses,
        })
    });
    handle.block_on(task)?
}

/// `n` calls (after 200 unrecorded ones) of one slot's async API, one every `pace`: placement
/// when `translate` is `None`, translation otherwise. Returns the calls' latencies and the
/// pauses before them.
fn slot_calls(
    slot: PluginSlot,
    translate: Option<()>,
    n: usize,
    pace: Duration,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let handle = tokio::runtime::Handle::current();
    let task = handle.spawn(async move {
        let (pod, ctx) = samples::placement_sample();
        let input = samples::translate_sample();
        let mut out = Vec::with_capacity(n);
        let mut pauses = Vec::with_capacity(n);
        for i in 0..n + 200 {
            let (pod, ctx, input) = (pod.clone(), ctx.clone(), input.clone());
            let paused = pause(pace).await;
            let started = Instant::now();
            match translate {
                None => {
                    slot.place(pod, ctx).await.context("PluginSlot::place")?;
                }
                Some(()) => {
                    slot.translate(input)
                        .await
                        .context("PluginSlot::translate")?;
                }
            }
            if i >= 200 {
                out.push(started.elapsed());
                pauses.push(paused);
            }
        }
        anyhow::Ok((out, pauses))
    });
    handle.block_on(task)?
}

/// The component plus a custom section: a new content hash with the same behaviour.
fn with_custom_section(bytes: &[u8], tag: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    let name = b"vnode-bench";
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name);
    body.extend_from_slice(tag.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0);
    leb(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

mod native {
    //! The zone-spread decision on the same sample, compiled for the host.
    use vnode_plugin_sdk::placement::{Decision, PlacementContext, PodView};
    use vnode_plugin_sdk::testing::{annotate, context, label, pod};

    /// Roughly the host's sample (same zones and usage, labels and annotations).
    pub fn sample() -> (PodView, PlacementContext) {
        let mut p = pod("default", "web-7d4b9c6f5-x2x9k");
        for (k, v) in [
            ("app", "web"),
            ("pod-template-hash", "7d4b9c6f5"),
            ("team", "storefront"),
        ] {
            p = label(p, k, v);
        }
        for (k, v) in [
            ("kubernetes.io/psp", "restricted"),
            ("prometheus.io/scrape", "true"),
            ("prometheus.io/port", "9090"),
        ] {
            p = annotate(p, k, v);
        }
        let ctx = context(
            &[
                ("cn-hangzhou-h", "vsw-h", 12),
                ("cn-hangzhou-i", "vsw-i", 9),
                ("cn-hangzhou-j", "vsw-j", 11),
            ],
            "",
        );
        (p, ctx)
    }

    /// What the plugin's `place` export does, natively: parse the config, decide.
    pub fn decide(pod: &PodView, ctx: PlacementContext) -> Decision {
        let config = zone_spread::Config::parse(&ctx.config).unwrap_or_default();
        zone_spread::decide(pod, &ctx, &config)
    }
}
