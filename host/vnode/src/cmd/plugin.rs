//! `vnode plugin check|simulate|new`: the plugin runtime offline, through the same loader the
//! daemon uses (so "check passes" means "the daemon will load it"), and a scaffold for new
//! plugins.

mod compare;
mod new;

use compare::{compare, print_comparison};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use vnode_plugin_host::contract::{
    Attempt, Decision, InstanceSpec, NodeDefaults, PlacementContext, Sizing, SpotStrategy,
    TranslateInput, ZoneUsage, ZoneVswitch,
};
use vnode_plugin_host::{
    CALL_TIMEOUT_MS_RANGE, LoadedPlugin, MEMORY_LIMIT_MIB_RANGE, PluginEngine, PluginKind,
    PluginLoader, PluginSpec, RuntimeConfig,
};

// Parsed once per process; boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(clap::Subcommand)]
pub enum PluginCommand {
    /// Validate a plugin component and print what it is (world, contract version, name,
    /// version, hash). Exits non-zero with the reason if the daemon would refuse it.
    Check(CheckArgs),
    /// Run a placement plugin (and optionally a translator) on every pod of a multi-document
    /// YAML file and print the decisions.
    Simulate(SimulateArgs),
    /// Create a ready plugin crate (SDK and contract vendored) that builds with
    /// `cargo build --release --target wasm32-wasip2`.
    New(new::NewArgs),
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The `.wasm` component.
    pub file: PathBuf,
    /// Configuration string passed to the plugin's `init`.
    #[arg(long, conflicts_with = "config_file")]
    pub config: Option<String>,
    /// File holding the configuration string.
    #[arg(long)]
    pub config_file: Option<PathBuf>,
    /// Require this kind of plugin.
    #[arg(long, value_enum)]
    pub kind: Option<KindArg>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Also measure what the plugin costs: load (compile or cache), instantiation and one
    /// decision on a prepared instance (20 samples each, on the built-in sample pod).
    #[arg(long)]
    pub timings: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// How the CLI runs plugins: the daemon's limits unless told otherwise.
#[derive(clap::Args, Clone, Default)]
pub struct RuntimeArgs {
    /// Keep compiled plugins in DIR (content-addressed, the daemon's `plugins.cacheDir`
    /// format), so the next run deserializes instead of compiling. Large plugins (a
    /// Python one is ~18 MB) take tens of seconds to compile.
    #[arg(long, value_name = "DIR", env = "VNODE_PLUGIN_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Deadline of one call in milliseconds, for every plugin of this command (the daemon's
    /// default: 50; per plugin there: `callTimeoutMs`). It is measured in wall-clock epoch
    /// ticks, so a heavily loaded machine needs a larger one for slow (e.g. Python) plugins.
    #[arg(
        long,
        value_name = "MS",
        env = "VNODE_PLUGIN_CALL_TIMEOUT_MS",
        value_parser = clap::value_parser!(u64).range(CALL_TIMEOUT_MS_RANGE)
    )]
    pub call_timeout_ms: Option<u64>,
    /// Linear memory a plugin may use per call, in MiB, for every plugin of this command (the
    /// daemon's default: 64; per plugin there: `memoryLimitMib`).
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(MEMORY_LIMIT_MIB_RANGE))]
    pub memory_limit_mib: Option<u64>,
}

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// The placement plugin (`.wasm`).
    #[arg(long)]
    pub plugin: PathBuf,
    /// Pods: a multi-document YAML file of `kind: Pod` objects.
    #[arg(long)]
    pub pods: PathBuf,
    /// Placement configuration string.
    #[arg(long, conflicts_with = "config_file")]
    pub config: Option<String>,
    /// File holding the placement configuration.
    #[arg(long)]
    pub config_file: Option<PathBuf>,
    /// Compare with this second placement plugin (`.wasm`): print, pod by pod, where the two
    /// decide differently, and a summary of both (zones, spot share, refusals, estimated
    /// hourly price from the ECI emulator's price table).
    #[arg(long, value_name = "OTHER.wasm", conflicts_with = "translator")]
    pub against: Option<PathBuf>,
    /// Configuration string for the `--against` plugin.
    #[arg(long, requires = "against")]
    pub against_config: Option<String>,
    /// Also translate each accepted pod (first attempt) with this translator (`.wasm`).
    #[arg(long)]
    pub translator: Option<PathBuf>,
    /// Translator configuration string.
    #[arg(long)]
    pub translator_config: Option<String>,
    /// ECI region.
    #[arg(long, default_value = "cn-hangzhou")]
    pub region: String,
    /// Zone and vSwitch of the node, `ZONE=VSWITCH`, repeatable (default: three sample zones).
    #[arg(long = "vswitch", value_name = "ZONE=VSWITCH")]
    pub vswitches: Vec<String>,
    /// Container groups already running in a zone, `ZONE=N`, repeatable. Accepted pods add to
    /// it as the simulation goes, so spreading is visible.
    #[arg(long = "usage", value_name = "ZONE=N")]
    pub usage: Vec<String>,
    /// Node name.
    #[arg(long, default_value = "vnode-eci")]
    pub node_name: String,
    /// Cluster name.
    #[arg(long, default_value = "simulated")]
    pub cluster_name: String,
    /// Security group for translation.
    #[arg(long, default_value = "sg-simulated")]
    pub security_group: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    Placement,
    Translator,
}

impl From<KindArg> for PluginKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Placement => PluginKind::Placement,
            KindArg::Translator => PluginKind::Translator,
        }
    }
}

pub async fn run(cmd: PluginCommand) -> Result<()> {
    match cmd {
        PluginCommand::Check(a) => check(a).await,
        PluginCommand::Simulate(a) => simulate(a).await,
        PluginCommand::New(a) => new::run(a).await,
    }
}

impl RuntimeArgs {
    /// The plugin at `path` as the daemon's config file would spell it (`path`, `config` or
    /// `configFile`, `callTimeoutMs`, `memoryLimitMib`): the same [`PluginSpec`] type, checks
    /// and loading as `plugins.*` in `vnode run`'s config.
    fn spec(
        &self,
        path: &Path,
        config: Option<String>,
        config_file: Option<PathBuf>,
    ) -> PluginSpec {
        PluginSpec {
            path: path.to_path_buf(),
            config: config.map_or(Value::Null, Value::String),
            config_file,
            call_timeout_ms: self.call_timeout_ms,
            memory_limit_mib: self.memory_limit_mib,
        }
    }
}

fn loader(runtime: &RuntimeArgs) -> Result<PluginLoader> {
    // The CLI makes a handful of calls: no instances prepared ahead. The limits come with
    // each plugin's spec.
    let config = RuntimeConfig {
        warm_instances: 0,
        ..RuntimeConfig::default()
    };
    Ok(PluginLoader::new(
        PluginEngine::new(config)?,
        runtime.cache_dir.clone(),
    ))
}

async fn load(
    loader: &PluginLoader,
    spec: &PluginSpec,
    kind: Option<PluginKind>,
) -> Result<Arc<LoadedPlugin>> {
    loader.load_spec(spec, kind).await.map_err(|e| {
        anyhow::Error::new(e.error).context(format!("{} cannot be loaded", e.file.display()))
    })
}

async fn check(args: CheckArgs) -> Result<()> {
    let spec = args.runtime.spec(&args.file, args.config, args.config_file);
    let size = std::fs::metadata(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?
        .len();
    let started = std::time::Instant::now();
    let plugin = load(&loader(&args.runtime)?, &spec, args.kind.map(Into::into)).await?;
    let load_time = started.elapsed();
    let timings = if args.timings {
        let p = plugin.clone();
        Some(tokio::task::spawn_blocking(move || measure(&p)).await??)
    } else {
        None
    };
    let id = plugin.identity();
    match args.output {
        Output::Json => println!(
            "{}",
            json!({
                "kind": id.kind.to_string(),
                "world": format!("vnode:plugin/{}", id.kind.world()),
                "contract": format!("vnode:plugin@{}", id.contract_version),
                "name": id.name,
                "version": id.version,
                "description": id.description,
                "sha256": id.sha256,
                "bytes": size,
                "config_sha256": id.config_sha256,
                "smoke_test": "passed",
                "load_ms": load_time.as_secs_f64() * 1e3,
                "timings": timings.as_ref().map(Timings::json),
            })
        ),
        Output::Table => {
            println!("plugin:      {} {}", id.name, id.version);
            println!("description: {}", id.description);
            println!(
                "world:       vnode:plugin/{} ({})",
                id.kind.world(),
                id.kind
            );
            println!("contract:    vnode:plugin@{}", id.contract_version);
            println!("sha256:      {}", id.sha256);
            println!("size:        {size} bytes");
            println!(
                "init:        configuration accepted ({} bytes)",
                plugin.config().len()
            );
            println!("smoke test:  passed (one decision on the built-in sample pod)");
            println!(
                "load:        {} (compile or cache, init, smoke decision)",
                ms(load_time)
            );
            if let Some(t) = &timings {
                t.print();
            }
        }
    }
    Ok(())
}

/// What one plugin costs per decision, measured by `check --timings`.
struct Timings {
    /// Fresh instance (store + instantiation + the guest's start-up call), sorted.
    instantiate: Vec<std::time::Duration>,
    /// One decision (or translation) on a prepared instance, sorted.
    call: Vec<std::time::Duration>,
}

const TIMING_SAMPLES: usize = 20;

fn measure(plugin: &LoadedPlugin) -> Result<Timings> {
    let mut instantiate = plugin.measure_instantiation(TIMING_SAMPLES, true)?;
    let mut call = match plugin.kind() {
        PluginKind::Placement => {
            let (pod, ctx) = vnode_plugin_host::samples::placement_sample();
            let ctx = PlacementContext {
                config: plugin.config().to_string(),
                ..ctx
            };
            plugin.measure_prepared_calls(TIMING_SAMPLES, Some((&pod, &ctx)), None)?
        }
        PluginKind::Translator => {
            let input = TranslateInput {
                config: plugin.config().to_string(),
                ..vnode_plugin_host::samples::translate_sample()
            };
            plugin.measure_prepared_calls(TIMING_SAMPLES, None, Some(&input))?
        }
    };
    instantiate.sort();
    call.sort();
    Ok(Timings { instantiate, call })
}

impl Timings {
    fn quantiles(v: &[std::time::Duration]) -> (std::time::Duration, std::time::Duration) {
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        (at(0.5), at(1.0))
    }

    fn json(&self) -> Value {
        let row = |v: &[std::time::Duration]| {
            let (p50, max) = Self::quantiles(v);
            json!({"samples": v.len(), "p50_ms": p50.as_secs_f64() * 1e3, "max_ms": max.as_secs_f64() * 1e3})
        };
        json!({"instantiate": row(&self.instantiate), "call": row(&self.call)})
    }

    fn print(&self) {
        let (p50, max) = Self::quantiles(&self.instantiate);
        println!(
            "instantiate: p50 {}, max {} ({} fresh instances, start-up call included)",
            ms(p50),
            ms(max),
            self.instantiate.len()
        );
        let (p50, max) = Self::quantiles(&self.call);
        println!(
            "decision:    p50 {}, max {} ({} calls on prepared instances, sample pod)",
            ms(p50),
            ms(max),
            self.call.len()
        );
    }
}

fn ms(d: std::time::Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn parse_pairs(items: &[String], what: &str) -> Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|s| {
            s.split_once('=')
                .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
                .with_context(|| format!("--{what} {s:?}: expected KEY=VALUE"))
        })
        .collect()
}

/// Pods to simulate, plus the ConfigMaps and Secrets the translator may need to resolve them.
struct Inputs {
    pods: Vec<k8s_openapi::api::core::v1::Pod>,
    referenced: vnode_mapping::translator_input::Referenced,
}

fn read_inputs(path: &Path) -> Result<Inputs> {
    use serde::Deserialize;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut inputs = Inputs {
        pods: Vec::new(),
        referenced: Default::default(),
    };
    for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let at = || format!("{}: document {}", path.display(), i + 1);
        let value = serde_yaml::Value::deserialize(doc).with_context(at)?;
        if value.is_null() {
            continue;
        }
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or("Pod")
            .to_string();
        match kind.as_str() {
            "Pod" => inputs.pods.push(
                serde_yaml::from_value(value)
                    .with_context(|| format!("{} is not a valid Pod", at()))?,
            ),
            "ConfigMap" => {
                let cm: k8s_openapi::api::core::v1::ConfigMap =
                    serde_yaml::from_value(value).with_context(at)?;
                inputs
                    .referenced
                    .config_maps
                    .insert(cm.metadata.name.clone().unwrap_or_default(), cm);
            }
            "Secret" => {
                let secret: k8s_openapi::api::core::v1::Secret =
                    serde_yaml::from_value(value).with_context(at)?;
                inputs
                    .referenced
                    .secrets
                    .insert(secret.metadata.name.clone().unwrap_or_default(), secret);
            }
            other => bail!(
                "{} is a {other}, not a Pod (ConfigMaps and Secrets are accepted as references)",
                at()
            ),
        }
    }
    if inputs.pods.is_empty() {
        bail!("{} contains no pods", path.display());
    }
    Ok(inputs)
}

/// One pod's outcome under one placement plugin.
struct Placed {
    /// `namespace/name`.
    pod: String,
    /// The pod's view (for pricing auto-sized attempts), when the pod could be read.
    view: Option<vnode_plugin_host::contract::PodView>,
    /// The decision, or why there is none.
    decision: Result<Decision, String>,
    /// `name version (sha)` of the plugin that decided.
    plugin: String,
    /// The JSON row `--output json` prints.
    row: Value,
}

/// The node the simulation pretends to be.
struct SimNode {
    zones: Vec<ZoneVswitch>,
    initial_usage: BTreeMap<String, u32>,
}

fn sim_node(args: &SimulateArgs) -> Result<SimNode> {
    let zones: Vec<ZoneVswitch> = if args.vswitches.is_empty() {
        vnode_plugin_host::samples::sample_zones()
    } else {
        parse_pairs(&args.vswitches, "vswitch")?
            .into_iter()
            .map(|(zone_id, vswitch_id)| ZoneVswitch {
                zone_id,
                vswitch_id,
            })
            .collect()
    };
    let mut usage: BTreeMap<String, u32> = zones.iter().map(|z| (z.zone_id.clone(), 0)).collect();
    for (zone, n) in parse_pairs(&args.usage, "usage")? {
        let n: u32 = n
            .parse()
            .with_context(|| format!("--usage {zone}={n}: not a number"))?;
        usage.insert(zone, n);
    }
    Ok(SimNode {
        zones,
        initial_usage: usage,
    })
}

async fn simulate(args: SimulateArgs) -> Result<()> {
    let loader = loader(&args.runtime)?;
    let spec = args
        .runtime
        .spec(&args.plugin, args.config.clone(), args.config_file.clone());
    let placement = load(&loader, &spec, Some(PluginKind::Placement)).await?;
    let against = match &args.against {
        Some(path) => {
            let spec = args.runtime.spec(path, args.against_config.clone(), None);
            Some(load(&loader, &spec, Some(PluginKind::Placement)).await?)
        }
        None => None,
    };
    let translator = match &args.translator {
        Some(path) => {
            let spec = args
                .runtime
                .spec(path, args.translator_config.clone(), None);
            Some(load(&loader, &spec, Some(PluginKind::Translator)).await?)
        }
        None => None,
    };
    let inputs = read_inputs(&args.pods)?;
    let node = sim_node(&args)?;

    let placed = place_all(&placement, &inputs, &node, &args, translator.as_ref()).await?;
    if let Some(other) = &against {
        let other_placed = place_all(other, &inputs, &node, &args, None).await?;
        let comparison = compare(&placed, &other_placed);
        match args.output {
            Output::Json => println!("{}", serde_json::to_string_pretty(&comparison)?),
            Output::Table => print_comparison(&comparison),
        }
        return Ok(());
    }
    let rows: Vec<Value> = placed.into_iter().map(|p| p.row).collect();
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Output::Table => print_table(&rows),
    }
    Ok(())
}

/// Runs one placement plugin over every pod, in file order. Accepted pods count towards the
/// zone of their first attempt, so later pods see the usage earlier decisions created.
async fn place_all(
    placement: &Arc<LoadedPlugin>,
    inputs: &Inputs,
    node: &SimNode,
    args: &SimulateArgs,
    translator: Option<&Arc<LoadedPlugin>>,
) -> Result<Vec<Placed>> {
    let mut usage = node.initial_usage.clone();
    let zones = &node.zones;
    let mut out = Vec::new();
    for pod in &inputs.pods {
        let name = format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            pod.metadata.name.as_deref().unwrap_or("?")
        );
        let identity = placement.identity();
        let plugin = format!(
            "{} {} ({})",
            identity.name,
            identity.version,
            identity.sha256_short()
        );
        let view = match vnode_mapping::placement_input::pod_view(pod) {
            Ok(v) => v,
            Err(e) => {
                let error = format!("invalid pod: {e}");
                out.push(Placed {
                    row: json!({"pod": name, "error": error}),
                    pod: name,
                    view: None,
                    decision: Err(error),
                    plugin,
                });
                continue;
            }
        };
        let context = PlacementContext {
            region: args.region.clone(),
            zones: zones.clone(),
            candidate_specs: default_specs(),
            usage: usage
                .iter()
                .map(|(z, n)| ZoneUsage {
                    zone_id: z.clone(),
                    container_groups: *n,
                })
                .collect(),
            recent_stockouts: Vec::new(),
            previous_decisions: 0,
            node_name: args.node_name.clone(),
            cluster_name: args.cluster_name.clone(),
            config: String::new(),
        };
        let p = placement.clone();
        let input = view.clone();
        let decided =
            tokio::task::spawn_blocking(move || p.place_blocking(&input, context)).await?;
        let decided = match decided {
            Ok(d) => d,
            Err(e) => {
                let error = e.to_string();
                out.push(Placed {
                    row: json!({"pod": name, "error": error}),
                    pod: name,
                    view: Some(view),
                    decision: Err(error),
                    plugin,
                });
                continue;
            }
        };
        let mut row = json!({
            "pod": name,
            "plugin": plugin,
            "decision": decision_json(&decided.value),
        });
        if let Decision::Accept(a) = &decided.value
            && let Some(first) = a.attempts.first()
        {
            if let Some(zone) = &first.zone_id {
                *usage.entry(zone.clone()).or_default() += 1;
            }
            if let Some(t) = translator {
                row["translation"] =
                    translate(t, pod, &inputs.referenced, first, args, zones).await;
            }
        }
        out.push(Placed {
            pod: name,
            view: Some(view),
            decision: Ok(decided.value),
            plugin,
            row,
        });
    }
    Ok(out)
}

/// ECI's common vCPU/memory combinations, smallest first.
fn default_specs() -> Vec<InstanceSpec> {
    [
        (250, 512),
        (500, 1024),
        (1000, 2048),
        (2000, 4096),
        (4000, 8192),
        (8000, 16384),
    ]
    .into_iter()
    .map(|(cpu_millis, memory_mib)| InstanceSpec {
        cpu_millis,
        memory_mib,
    })
    .collect()
}

async fn translate(
    translator: &Arc<LoadedPlugin>,
    pod: &k8s_openapi::api::core::v1::Pod,
    referenced: &vnode_mapping::translator_input::Referenced,
    attempt: &Attempt,
    args: &SimulateArgs,
    zones: &[ZoneVswitch],
) -> Value {
    let resolved = match vnode_mapping::translator_input::resolve(pod, referenced, &args.node_name)
    {
        Ok(r) => r,
        Err(e) => return json!({"error": format!("cannot resolve the pod: {e}")}),
    };
    let input = TranslateInput {
        pod: resolved.pod,
        attempt: attempt.clone(),
        node: NodeDefaults {
            region: args.region.clone(),
            security_group_id: args.security_group.clone(),
            zones: zones.to_vec(),
            cluster_name: args.cluster_name.clone(),
            node_name: args.node_name.clone(),
            cluster_dns: vec!["10.96.0.10".into()],
            cluster_domain: "cluster.local".into(),
        },
        config: String::new(),
    };
    let t = translator.clone();
    let decided = match tokio::task::spawn_blocking(move || t.translate_blocking(input)).await {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => return json!({"error": e.to_string()}),
        Err(e) => return json!({"error": format!("translation task failed: {e}")}),
    };
    let plugin = format!(
        "{} {} ({})",
        decided.plugin.name,
        decided.plugin.version,
        decided.plugin.sha256_short()
    );
    match decided.value {
        Ok(r) => json!({
            "plugin": plugin,
            "name": r.name,
            "zone": r.zone_id,
            "vswitches": r.vswitch_ids,
            "security_group": r.security_group_id,
            "cpu": r.cpu,
            "memory_gib": r.memory,
            "instance_types": r.instance_types,
            "spot_strategy": r.spot_strategy,
            "containers": r.containers.iter().map(|c| json!({"name": c.name, "image": c.image, "cpu": c.cpu, "memory_gib": c.memory})).collect::<Vec<_>>(),
            "volumes": r.volumes.len(),
            "tags": r.tags.iter().map(|t| (t.key.clone(), Value::from(t.value.clone()))).collect::<serde_json::Map<_, _>>(),
        }),
        Err(e) => json!({"plugin": plugin, "refused": format!("{e:?}")}),
    }
}

fn spot_json(s: &SpotStrategy) -> Value {
    match s {
        SpotStrategy::OnDemand => json!("NoSpot"),
        SpotStrategy::SpotAsPriceGo => json!("SpotAsPriceGo"),
        SpotStrategy::SpotWithPriceLimit(p) => json!({"SpotWithPriceLimit": p}),
    }
}

fn sizing_text(s: &Sizing) -> String {
    match s {
        Sizing::Auto => "auto".into(),
        Sizing::Spec(s) => format!(
            "{}-{}Gi",
            s.cpu_millis as f64 / 1000.0,
            s.memory_mib as f64 / 1024.0
        ),
        Sizing::InstanceTypes(t) => t.join(","),
    }
}

fn attempt_json(a: &Attempt) -> Value {
    json!({
        "zone": a.zone_id,
        "vswitches": a.vswitch_ids,
        "schedule_strategy": a.schedule_strategy,
        "sizing": sizing_text(&a.sizing),
        "spot": spot_json(&a.spot),
        "spot_duration_hours": a.spot_duration_hours,
        "compute_categories": a.compute_categories,
        "extra_tags": a.extra_tags.iter().map(|t| (t.key.clone(), Value::from(t.value.clone()))).collect::<serde_json::Map<_, _>>(),
    })
}

fn decision_json(d: &Decision) -> Value {
    match d {
        Decision::Accept(a) => {
            json!({"accept": {"reason": a.reason, "attempts": a.attempts.iter().map(attempt_json).collect::<Vec<_>>()}})
        }
        Decision::Refuse(r) => json!({"refuse": r}),
        Decision::Defer(d) => {
            json!({"defer": {"retry_after_ms": d.retry_after_ms, "reason": d.reason}})
        }
    }
}

fn print_table(rows: &[Value]) {
    println!(
        "{:<36} {:<8} {:<16} {:<12} {:<22} REASON",
        "POD", "DECISION", "ZONE", "SIZING", "SPOT"
    );
    for row in rows {
        let pod = row["pod"].as_str().unwrap_or("?");
        if let Some(e) = row.get("error").and_then(Value::as_str) {
            println!("{pod:<36} {:<8} {e}", "ERROR");
            continue;
        }
        let d = &row["decision"];
        if let Some(a) = d.get("accept") {
            let first = &a["attempts"][0];
            let zone = first["zone"].as_str().unwrap_or("(ECI picks)");
            let spot = match &first["spot"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let n = a["attempts"].as_array().map_or(0, Vec::len);
            let more = if n > 1 {
                format!(" (+{} fallback attempts)", n - 1)
            } else {
                String::new()
            };
            println!(
                "{pod:<36} {:<8} {zone:<16} {:<12} {spot:<22} {}{more}",
                "accept",
                first["sizing"].as_str().unwrap_or("?"),
                a["reason"].as_str().unwrap_or("")
            );
        } else if let Some(r) = d.get("refuse") {
            println!(
                "{pod:<36} {:<8} {:<16} {:<12} {:<22} {}",
                "refuse",
                "-",
                "-",
                "-",
                r.as_str().unwrap_or("")
            );
        } else if let Some(df) = d.get("defer") {
            println!(
                "{pod:<36} {:<8} {:<16} {:<12} {:<22} retry in {} ms: {}",
                "defer",
                "-",
                "-",
                "-",
                df["retry_after_ms"],
                df["reason"].as_str().unwrap_or("")
            );
        }
        if let Some(t) = row.get("translation") {
            println!("{:<36} translation: {}", "", t);
        }
    }
}
