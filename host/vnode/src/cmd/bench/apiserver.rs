//! `vnode bench apiserver`: the embedded API server alone, driven through kube-rs over
//! loopback TLS, so the sandbox is never what limits vnode's own benchmarks.
//!
//! The server runs as its own process (`vnode apiserver`), so its CPU time and resident
//! memory (from `/proc/<pid>`) are the server's alone. Measures pod creates per second
//! (concurrent clients), the server's CPU per create, watch fan-out (10 watchers each
//! receiving every create, with each watcher's lag behind the last create), a full LIST,
//! and the server's resident memory with N pods stored. Pods are created already bound to
//! a node name so the built-in scheduler does not add binding writes and events to the
//! measurement.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt as _;

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};

#[derive(clap::Args)]
pub struct Args {
    /// Number of pods to create.
    #[arg(long, default_value_t = 10_000)]
    pub pods: usize,
    /// Concurrent create requests.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Number of concurrent watchers for the fan-out measurement.
    #[arg(long, default_value_t = 10)]
    pub watchers: usize,
}

/// CPU seconds (user + system) and resident memory (KiB) of a process, from `/proc`.
fn proc_usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = super::ProcStat::parse(&stat)?.cpu_ticks as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())?;
    // Linux reports these in USER_HZ, which is 100 on every architecture vnode builds for.
    Some((ticks / 100.0, rss))
}

/// `/proc/loadavg`'s 1-minute figure.
fn load_1m() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(f64::NAN)
}

fn pod(i: usize) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": format!("bench-{i:06}"), "labels": { "app": "bench", "shard": (i % 16).to_string() } },
        "spec": {
            "nodeName": "bench-node",
            "containers": [{
                "name": "app",
                "image": "registry.example/bench:1.0",
                "env": [{ "name": "INDEX", "value": i.to_string() }],
                "resources": { "requests": { "cpu": "100m", "memory": "64Mi" } },
            }],
        },
    }))?)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("vnode-bench-apiserver-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let exe = std::env::current_exe().context("locating the vnode executable")?;
    let log = dir.join("apiserver.log");
    let mut child = tokio::process::Command::new(exe)
        .arg("apiserver")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--dir")
        .arg(&dir)
        .arg("--watch-window")
        .arg((args.pods + 1000).to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&log)?))
        .kill_on_drop(true)
        .spawn()
        .context("starting vnode apiserver")?;
    let pid = child.id().context("apiserver pid")?;
    let stdout = child.stdout.take().context("apiserver stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if line.contains(" listening on ") {
                return Ok(());
            }
        }
        anyhow::bail!(
            "vnode apiserver exited before listening (see {})",
            log.display()
        )
    })
    .await
    .context("vnode apiserver did not start within 30 s")??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let result = measure(&args, &dir.join("kubeconfig"), pid).await;
    let _ = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await;
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(args: &Args, kubeconfig_path: &std::path::Path, pid: u32) -> anyhow::Result<()> {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig_path)?;
    let cfg = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    let client = kube::Client::try_from(cfg)?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let load_start = load_1m();

    // Watchers start from the current resourceVersion and count ADDED events.
    let start_rv = pods
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut watcher_tasks = Vec::new();
    for _ in 0..args.watchers {
        let pods = pods.clone();
        let rv = start_rv.clone();
        let want = args.pods;
        watcher_tasks.push(tokio::spawn(async move {
            let mut stream = pods
                .watch(&WatchParams::default().timeout(290), &rv)
                .await?
                .boxed();
            let mut seen = 0usize;
            while let Some(ev) = stream.try_next().await? {
                if let WatchEvent::Added(_) = ev {
                    seen += 1;
                    if seen == want {
                        return Ok::<Instant, anyhow::Error>(Instant::now());
                    }
                }
            }
            anyhow::bail!("watch ended after {seen} of {want} events")
        }));
    }
    // Give the watch requests time to be established before the clock starts.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let usage_before = proc_usage(pid);
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let pods = pods.clone();
        let next = next.clone();
        let total = args.pods;
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<(), anyhow::Error>(());
                }
                pods.create(&PostParams::default(), &pod(i)?)
                    .await
                    .with_context(|| format!("creating pod {i}"))?;
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    let create_elapsed = started.elapsed();
    let usage_created = proc_usage(pid);
    let created_at = started + create_elapsed;
    let mut last_delivery = started;
    let mut lags = Vec::new();
    for w in watcher_tasks {
        let t = tokio::time::timeout(Duration::from_secs(120), w)
            .await
            .context("watchers timed out")???;
        last_delivery = last_delivery.max(t);
        lags.push(t.saturating_duration_since(created_at));
    }
    lags.sort();
    let fanout_elapsed = last_delivery - started;
    let usage_delivered = proc_usage(pid);

    let list_started = Instant::now();
    let listed = pods.list(&ListParams::default()).await?.items.len();
    let list_elapsed = list_started.elapsed();
    let usage_after = proc_usage(pid);
    let load_end = load_1m();

    let creates_per_s = args.pods as f64 / create_elapsed.as_secs_f64();
    let delivered = (args.pods * args.watchers) as f64 / fanout_elapsed.as_secs_f64();
    println!(
        "vnode bench apiserver ({} pods, {} concurrent creators, {} watchers)",
        args.pods, args.concurrency, args.watchers
    );
    println!("{:<44} {:>14}", "metric", "value");
    println!(
        "{:<44} {:>14.0}",
        "pod creates/s (kube-rs over TLS)", creates_per_s
    );
    println!(
        "{:<44} {:>14.2}",
        "create phase, s",
        create_elapsed.as_secs_f64()
    );
    println!(
        "{:<44} {:>14.2}",
        "all watchers saw every create, s",
        fanout_elapsed.as_secs_f64()
    );
    println!(
        "{:<44} {:>14.0}",
        "watch events delivered/s (all watchers)", delivered
    );
    println!(
        "{:<44} {:>14.1}",
        format!("LIST of {listed} pods, ms"),
        list_elapsed.as_secs_f64() * 1000.0
    );
    if let Some(lag) = lags.last() {
        println!(
            "{:<44} {:>14}",
            "watcher lag after the last create, ms p50/max",
            format!(
                "{:.0}/{:.0}",
                lags[lags.len() / 2].as_secs_f64() * 1000.0,
                lag.as_secs_f64() * 1000.0
            )
        );
    }
    if let (Some(b), Some(c), Some(d), Some(a)) =
        (usage_before, usage_created, usage_delivered, usage_after)
    {
        let mib = |k: u64| k as f64 / 1024.0;
        let per = |cpu: f64| cpu * 1000.0 / args.pods.max(1) as f64;
        println!(
            "{:<44} {:>14.3}",
            "server CPU-ms per create (create phase)",
            per(c.0 - b.0)
        );
        println!(
            "{:<44} {:>14.3}",
            "server CPU-ms per create incl. fan-out",
            per(d.0 - b.0)
        );
        println!("{:<44} {:>14.1}", "server RSS before, MiB", mib(b.1));
        let label = format!("server RSS with {} pods stored, MiB", args.pods);
        println!("{:<44} {:>14.1}", label, mib(d.1));
        let per_pod = d.1.saturating_sub(b.1) as f64 / args.pods.max(1) as f64;
        println!(
            "{:<44} {:>14.2}",
            "server RSS growth per stored pod, KiB", per_pod
        );
        println!(
            "{:<44} {:>14.1}",
            "server RSS after the full LIST, MiB",
            mib(a.1)
        );
    }
    println!(
        "{:<44} {:>14}",
        "load average (1 min) at start/end",
        format!("{load_start:.1}/{load_end:.1}")
    );
    println!("(the server is a separate `vnode apiserver` process; CPU and RSS are its own)");
    Ok(())
}
