//! `vnode bench eci`: the ECI client against the in-process emulator on loopback, quotas
//! lifted, instant lifecycle. Measures creates/s and describes/s through the real client
//! (signing, HTTP, parsing), so later work knows the emulator is never the bottleneck.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use vnode_eci::model::{
    Container, CreateContainerGroupRequest, DescribeContainerGroupsRequest, Tag,
};
use vnode_eci::{
    Credentials, EciClient, EciClientConfig, RateLimits, RetryPolicy, SignatureVersion,
};
use vnode_eci_emulator::{EmulatorConfig, Profile};

#[derive(clap::Args)]
pub struct Args {
    /// Number of CreateContainerGroup calls (and of describe calls).
    #[arg(long, default_value_t = 20_000)]
    pub creates: usize,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Sign with HMAC-SHA1 (v1) instead of ACS3-HMAC-SHA256 (v3).
    #[arg(long)]
    pub v1: bool,
}

struct Phase {
    name: &'static str,
    calls: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort_unstable();
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.creates > 0 && args.concurrency > 0,
        "--creates and --concurrency must be positive"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let config = EmulatorConfig {
        profile: Profile::instant(),
        ..EmulatorConfig::default()
    }
    .lift_quotas();
    let (ak, sk) = (
        config.access_key_id.clone(),
        config.access_key_secret.clone(),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(vnode_eci_emulator::serve(listener, config, async move {
        let _ = stop_rx.await;
    }));
    let client = EciClient::new(EciClientConfig {
        endpoint: Some(format!("http://{addr}")),
        signature_version: if args.v1 {
            SignatureVersion::V1
        } else {
            SignatureVersion::V3
        },
        rate_limits: RateLimits::unlimited(),
        retry: RetryPolicy::none(),
        ..EciClientConfig::new("cn-hangzhou", Credentials::new(ak, sk))
    })?;
    let client = Arc::new(client);

    // Warm up connections.
    let _ = client
        .describe_container_groups(&DescribeContainerGroupsRequest::default())
        .await;

    let create = run_phase("CreateContainerGroup", args.creates, args.concurrency, {
        let client = Arc::clone(&client);
        move |i| {
            let client = Arc::clone(&client);
            async move {
                let uid = format!("bench-{i:08}");
                let req = CreateContainerGroupRequest {
                    container_group_name: format!("bench-{i}"),
                    containers: vec![Container {
                        name: "app".into(),
                        image: "nginx:1.25".into(),
                        cpu: Some(0.5),
                        memory: Some(1.0),
                        ..Default::default()
                    }],
                    tags: vec![
                        Tag::new("vnode.io/node", "bench"),
                        Tag::new("vnode.io/pod-uid", uid.clone()),
                    ],
                    client_token: Some(vnode_eci::client_token_for_pod(&uid, 0)),
                    ..Default::default()
                };
                client
                    .create_container_group(&req)
                    .await
                    .map(|r| r.container_group_id)
            }
        }
    })
    .await?;
    let ids = Arc::new(create.1);
    let describe = run_phase(
        "DescribeContainerGroups (20 ids)",
        args.creates,
        args.concurrency,
        {
            let client = Arc::clone(&client);
            let ids = Arc::clone(&ids);
            move |i| {
                let client = Arc::clone(&client);
                let ids = Arc::clone(&ids);
                async move {
                    let start = (i * 20) % ids.len().max(1);
                    let batch: Vec<String> = ids
                        .iter()
                        .cycle()
                        .skip(start)
                        .take(20.min(ids.len()))
                        .cloned()
                        .collect();
                    let req = DescribeContainerGroupsRequest {
                        container_group_ids: batch,
                        ..Default::default()
                    };
                    client
                        .describe_container_groups(&req)
                        .await
                        .map(|r| r.container_groups.len().to_string())
                }
            }
        },
    )
    .await?;
    let status = run_phase(
        "DescribeContainerGroupStatus (20 ids)",
        args.creates,
        args.concurrency,
        {
            let client = Arc::clone(&client);
            let ids = Arc::clone(&ids);
            move |i| {
                let client = Arc::clone(&client);
                let ids = Arc::clone(&ids);
                async move {
                    let start = (i * 20) % ids.len().max(1);
                    let batch: Vec<String> = ids
                        .iter()
                        .cycle()
                        .skip(start)
                        .take(20.min(ids.len()))
                        .cloned()
                        .collect();
                    client
                        .describe_container_group_status_by_ids(&batch, None)
                        .await
                        .map(|r| r.len().to_string())
                }
            }
        },
    )
    .await?;

    println!(
        "ECI client + emulator on loopback ({}; quotas lifted; concurrency {})",
        if args.v1 {
            "v1 HMAC-SHA1"
        } else {
            "v3 ACS3-HMAC-SHA256"
        },
        args.concurrency
    );
    println!(
        "{:<40} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "phase", "calls", "calls/s", "p50 ms", "p99 ms", "total s"
    );
    for p in [&create.0, &describe.0, &status.0] {
        println!(
            "{:<40} {:>8} {:>10.0} {:>10.2} {:>10.2} {:>10.2}",
            p.name,
            p.calls,
            p.rate(),
            p.percentile(0.50).as_secs_f64() * 1000.0,
            p.percentile(0.99).as_secs_f64() * 1000.0,
            p.elapsed.as_secs_f64()
        );
    }
    let target = 5000.0;
    println!(
        "target: >= {target:.0} creates/s -> {}",
        if create.0.rate() >= target {
            "met"
        } else {
            "NOT met"
        }
    );
    let _ = stop_tx.send(());
    server.await.context("emulator task")??;
    Ok(())
}

async fn run_phase<F, Fut>(
    name: &'static str,
    calls: usize,
    concurrency: usize,
    f: F,
) -> anyhow::Result<(Phase, Vec<String>)>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<String, vnode_eci::EciError>>,
{
    let started = Instant::now();
    let results: Vec<(Duration, Result<String, vnode_eci::EciError>)> =
        futures::stream::iter(0..calls)
            .map(|i| {
                let fut = f(i);
                async move {
                    let t = Instant::now();
                    let r = fut.await;
                    (t.elapsed(), r)
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
    let elapsed = started.elapsed();
    let mut latencies = Vec::with_capacity(results.len());
    let mut values = Vec::with_capacity(results.len());
    for (lat, r) in results {
        latencies.push(lat);
        values.push(r.with_context(|| format!("{name} failed during the benchmark"))?);
    }
    Ok((
        Phase {
            name,
            calls,
            elapsed,
            latencies,
        },
        values,
    ))
}
