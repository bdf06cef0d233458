//! `vnode bench plugins`: what a plugin decision costs, step by step.
//!
//! Reports, for the shipped defaults on the built-in realistic sample pod: load (compile +
//! validate), instantiation from the pre-linked component, per-decision latency of placement
//! and translation (with instances prepared ahead, and with instantiation on the call path),
//! placement + translation per pod against the 50 µs p99 target, the same placement logic
//! compiled natively, and the time from a file write to the new version serving (target ≤ 1 s).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use vnode_plugin_host::{
    LoadedPlugin, PluginEngine, PluginKind, PluginLoader, PluginSlot, PluginSource, PluginWatcher,
    RuntimeConfig, WatchOptions, WatchTarget, builtin, samples, sha256_hex,
};

#[derive(clap::Args)]
pub struct Args {
    /// Decisions per measurement.
    #[arg(long, default_value_t = 5000)]
    pub iterations: usize,
    /// Pause between decisions in the "paced" runs (a busy node places far fewer than
    /// 1000 pods/s; the pause lets the background worker keep instances ready).
    #[arg(long, default_value_t = 300)]
    pub pace_us: u64,
    /// Hot-reload rounds.
    #[arg(long, default_value_t = 5)]
    pub reload_rounds: usize,
}

struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    let mean = samples.iter().sum::<Duration>() / samples.len().max(1) as u32;
    Stats {
        p50: pick(0.50),
        p99: pick(0.99),
        mean,
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn row(name: &str, s: &Stats, note: &str) {
    println!(
        "{name:<58} {:>12} {:>12} {:>12}  {note}",
        us(s.p50),
        us(s.p99),
        us(s.mean)
    );
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

fn bench(args: Args) -> Result<()> {
    let n = args.iterations.max(100);
    let pace = Some(Duration::from_micros(args.pace_us));
    let warm_engine = PluginEngine::new(RuntimeConfig::default())?;
    let cold_engine = PluginEngine::new(RuntimeConfig {
        warm_instances: 0,
        ..RuntimeConfig::default()
    })?;
    println!(
        "vnode bench plugins: {n} decisions per row, sample pod {}/{}; pooling allocator: {}",
        samples::sample_meta().namespace,
        samples::sample_meta().name,
        warm_engine.uses_pooling()
    );

    let warm = PluginLoader::new(warm_engine.clone(), None);
    let cold = PluginLoader::new(cold_engine, None);
    let t = Instant::now();
    let placement = load(&warm, builtin::ZONE_SPREAD, PluginKind::Placement)?;
    let load_placement = t.elapsed();
    let t = Instant::now();
    let translator = load(&warm, builtin::TRANSLATOR_DEFAULT, PluginKind::Translator)?;
    let load_translator = t.elapsed();
    let placement_cold = load(&cold, builtin::ZONE_SPREAD, PluginKind::Placement)?;
    let translator_cold = load(&cold, builtin::TRANSLATOR_DEFAULT, PluginKind::Translator)?;
    println!(
        "load (compile + link + init + smoke decision, no cache): zone-spread {} KB in {:.1} ms, translator-default {} KB in {:.1} ms",
        builtin::ZONE_SPREAD.len() / 1024,
        load_placement.as_secs_f64() * 1e3,
        builtin::TRANSLATOR_DEFAULT.len() / 1024,
        load_translator.as_secs_f64() * 1e3
    );
    println!();
    println!("{:<58} {:>12} {:>12} {:>12}", "step", "p50", "p99", "mean");

    let (pod, ctx) = samples::placement_sample();
    let input = samples::translate_sample();

    // The headline: exactly what the daemon does per pod — `PluginSlot::place` then
    // `PluginSlot::translate` through the async API, from a task on the multi-thread runtime,
    // paced like a busy node (instances are prepared ahead between pods).
    let headline = daemon_path(
        PluginSlot::new(placement.clone()),
        PluginSlot::new(translator.clone()),
        n,
        Duration::from_micros(args.pace_us),
    )?;
    let target = Duration::from_micros(50);
    row(
        "DAEMON PATH: place + translate per pod (async, paced)",
        &headline.both,
        &format!(
            "target ≤ {} p99: {} (measured p99 {})",
            us(target),
            if headline.both.p99 <= target {
                "MET"
            } else {
                "NOT MET"
            },
            us(headline.both.p99)
        ),
    );
    row("  of which PluginSlot::place", &headline.place, "");
    row("  of which PluginSlot::translate", &headline.translate, "");
    println!();
    println!("diagnostics:");

    // Instantiation.
    row(
        "instantiate (store + instance from pre-linked)",
        &stats(placement.measure_instantiation(n, false)?),
        "zone-spread",
    );
    row(
        "instantiate + warm-up info() call (background worker)",
        &stats(placement.measure_instantiation(n, true)?),
        "zone-spread",
    );
    row(
        "instantiate (translator)",
        &stats(translator.measure_instantiation(n, false)?),
        "translator-default",
    );

    // Placement.
    let place = |p: &LoadedPlugin| {
        p.place_blocking(&pod, ctx.clone())
            .map(|_| ())
            .context("placement call")
    };
    let translate = |p: &LoadedPlugin| {
        p.translate_blocking(input.clone())
            .map(|_| ())
            .context("translate call")
    };
    row(
        "placement call on a prepared instance (no worker competing)",
        &stats(placement.measure_prepared_calls(n, Some((&pod, &ctx)), None)?),
        "decision path, warm",
    );
    row(
        "translation call on a prepared instance (no worker competing)",
        &stats(translator.measure_prepared_calls(n, None, Some(&input))?),
        "decision path, warm",
    );
    row(
        "placement, instance prepared ahead (paced)",
        &stats(time_n(n, pace, || place(&placement))?),
        "the daemon's path",
    );
    row(
        "placement, instantiate on the call path",
        &stats(time_n(n, None, || place(&placement_cold))?),
        "no warm pool",
    );
    row(
        "placement, back-to-back (pool drains)",
        &stats(time_n(n, None, || place(&placement))?),
        "",
    );
    row(
        "translation, instance prepared ahead (paced)",
        &stats(time_n(n, pace, || translate(&translator))?),
        "the daemon's path",
    );
    row(
        "translation, instantiate on the call path",
        &stats(time_n(n, None, || translate(&translator_cold))?),
        "no warm pool",
    );

    // The target: both decisions for one pod.
    let both = stats(time_n(n, pace, || {
        place(&placement)?;
        translate(&translator)
    })?);
    row(
        "placement + translation per pod (blocking API, paced)",
        &both,
        "no async layer",
    );
    let both_cold = stats(time_n(n, None, || {
        place(&placement_cold)?;
        translate(&translator_cold)
    })?);
    row(
        "placement + translation per pod (instantiate inline)",
        &both_cold,
        "",
    );

    // Native comparison: the same zone-spread logic compiled for the host.
    let (native_pod, native_ctx) = native::sample();
    let native_samples = time_n(n, None, || {
        std::hint::black_box(native::decide(&native_pod, native_ctx.clone()));
        Ok(())
    })?;
    row(
        "placement logic compiled natively (zone-spread)",
        &stats(native_samples),
        "same code, no Wasm",
    );

    // Hot reload: file write → new version serving.
    println!();
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("placement.wasm");
    std::fs::write(&file, builtin::ZONE_SPREAD)?;
    let slot = Arc::new(PluginSlot::new(placement.clone()));
    let target = WatchTarget {
        slot: slot.clone(),
        plugin_file: file.clone(),
        config_file: None,
    };
    let _watcher = PluginWatcher::start(warm.clone(), target, WatchOptions::default())?;
    let mut reloads = Vec::new();
    for round in 0..args.reload_rounds.max(1) {
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
    Ok(())
}

/// Latencies of the daemon's per-pod plugin calls.
struct DaemonPath {
    place: Stats,
    translate: Stats,
    both: Stats,
}

/// Runs `n` pods (after 200 unrecorded ones) through both slots' async API from a task on the
/// command's multi-thread runtime, one pod every `pace`.
fn daemon_path(
    placement: PluginSlot,
    translator: PluginSlot,
    n: usize,
    pace: Duration,
) -> Result<DaemonPath> {
    let handle = tokio::runtime::Handle::current();
    let task = handle.spawn(async move {
        let (pod, ctx) = samples::placement_sample();
        let input = samples::translate_sample();
        let (mut place, mut translate, mut both) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n + 200 {
            // Built before the clock starts: the daemon builds its inputs from the pod anyway.
            let (pod, ctx, input) = (pod.clone(), ctx.clone(), input.clone());
            tokio::time::sleep(pace).await;
            let started = Instant::now();
            placement
                .place(pod, ctx)
                .await
                .context("placement via PluginSlot::place")?;
            let placed = Instant::now();
            translator
                .translate(input)
                .await
                .context("translation via PluginSlot::translate")?;
            let done = Instant::now();
            if i >= 200 {
                place.push(placed - started);
                translate.push(done - placed);
                both.push(done - started);
            }
        }
        anyhow::Ok(DaemonPath {
            place: stats(place),
            translate: stats(translate),
            both: stats(both),
        })
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
