//! `vnode bench apiserver`: the embedded API server alone, driven through kube-rs over
//! loopback TLS, so the sandbox is never what limits vnode's own benchmarks.
//!
//! Measures pod creates per second (concurrent clients), watch fan-out (10 watchers each
//! receiving every create), a full LIST, and the process's resident memory with N pods
//! stored. Pods are created already bound to a node name so the built-in scheduler does
//! not add binding writes and events to the measurement.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use vnode_apiserver::{ApiServer, ApiServerConfig};

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

fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mut config = ApiServerConfig::new(&dir);
    config.watch_window = args.pods + 1000;
    let server = ApiServer::bind(listener, config)?;
    let kubeconfig_path = server.kubeconfig_path();
    let stop = tokio_util::sync::CancellationToken::new();
    let server_task = tokio::spawn({
        let stop = stop.clone();
        async move { server.run(stop.cancelled_owned()).await }
    });
    let result = measure(&args, &kubeconfig_path).await;
    stop.cancel();
    let _ = server_task.await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(args: &Args, kubeconfig_path: &std::path::Path) -> anyhow::Result<()> {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig_path)?;
    let cfg = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    let client = kube::Client::try_from(cfg)?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rss_before = rss_kib();

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
    let mut last_delivery = started;
    for w in watcher_tasks {
        let t = tokio::time::timeout(Duration::from_secs(120), w)
            .await
            .context("watchers timed out")???;
        last_delivery = last_delivery.max(t);
    }
    let fanout_elapsed = last_delivery - started;
    let rss_stored = rss_kib();

    let list_started = Instant::now();
    let listed = pods.list(&ListParams::default()).await?.items.len();
    let list_elapsed = list_started.elapsed();
    let rss_after = rss_kib();

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
    if let (Some(b), Some(s), Some(a)) = (rss_before, rss_stored, rss_after) {
        let mib = |k: u64| k as f64 / 1024.0;
        println!("{:<44} {:>14.1}", "process RSS before, MiB", mib(b));
        let label = format!("process RSS with {} pods stored, MiB", args.pods);
        println!("{:<44} {:>14.1}", label, mib(s));
        let per_pod = s.saturating_sub(b) as f64 / args.pods.max(1) as f64;
        println!("{:<44} {:>14.2}", "RSS growth per stored pod, KiB", per_pod);
        println!(
            "{:<44} {:>14.1}",
            "process RSS after the full LIST, MiB",
            mib(a)
        );
    }
    println!("(server and kube-rs client share the process; RSS includes allocator slack)");
    Ok(())
}
