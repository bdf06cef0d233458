//! `vnode apiserver --drop-watches-every`: every watch ends after a random time up to the
//! given duration (a clean end, a reset stream, or a reset TCP connection), and kube-rs's
//! watcher still sees every change and converges on the server's state.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use vnode_tests::VnodeProcess;

struct Server {
    _proc: VnodeProcess,
    _dir: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
}

fn start(drop_every: &str) -> Result<Server> {
    let dir = tempfile::tempdir()?;
    let d = dir.path().to_str().context("utf-8")?.to_string();
    let proc = VnodeProcess::start(
        &[
            "apiserver",
            "--listen",
            "127.0.0.1:0",
            "--dir",
            &d,
            "--drop-watches-every",
            drop_every,
        ],
        Duration::from_secs(30),
    )?;
    let kubeconfig = dir.path().join("kubeconfig");
    Ok(Server {
        _proc: proc,
        _dir: dir,
        kubeconfig,
    })
}

async fn client(server: &Server) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(&server.kubeconfig)?;
    let mut cfg =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    cfg.read_timeout = Some(Duration::from_secs(60));
    Ok(kube::Client::try_from(cfg)?)
}

fn cm(name: &str, value: &str) -> Result<ConfigMap> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": name, "labels": { "chaos": "yes" } }, "data": { "v": value },
    }))?)
}

fn value_of(o: &ConfigMap) -> String {
    o.data
        .as_ref()
        .and_then(|d| d.get("v"))
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn every_watch_ends_within_the_bound_in_all_three_ways() -> Result<()> {
    let s = start("300ms")?;
    let api: Api<ConfigMap> = Api::default_namespaced(client(&s).await?);
    let rv = api
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .context("rv")?;
    let (mut clean, mut broken) = (0, 0);
    for _ in 0..24 {
        let started = std::time::Instant::now();
        let mut stream = api
            .watch(&WatchParams::default().timeout(60), &rv)
            .await?
            .boxed();
        // Nothing changes, so the stream only ends because the server ends it. (The bounds
        // are far above the 300 ms for a loaded machine; a watch that is never dropped
        // would last its 60 s timeout.)
        let ended = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match stream.try_next().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return true,
                    Err(_) => return false,
                }
            }
        })
        .await
        .context("a watch outlived --drop-watches-every by far")?;
        ensure!(started.elapsed() < Duration::from_secs(20), "{started:?}");
        if ended {
            clean += 1;
        } else {
            broken += 1;
        }
    }
    // The server's endings take turns (a third end cleanly, two thirds are reset: stream
    // or connection), so 24 watches in a row meet both kinds.
    ensure!(clean > 0 && broken > 0, "clean {clean}, broken {broken}");
    // Ordinary requests keep working.
    api.create(&PostParams::default(), &cm("after", "1")?)
        .await?;
    Ok(())
}

#[tokio::test]
async fn the_watcher_loses_nothing_while_watches_keep_dropping() -> Result<()> {
    let s = start("250ms")?;
    let writer: Api<ConfigMap> = Api::default_namespaced(client(&s).await?);
    let watched: Api<ConfigMap> = Api::default_namespaced(client(&s).await?);
    let cfg = watcher::Config::default().labels("chaos=yes").timeout(60);
    let mut events = watcher(watched, cfg).default_backoff().boxed();

    // What the watcher has told us: name → value, and every (name, value) it ever saw.
    let mut state: BTreeMap<String, String> = BTreeMap::new();
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let mut relist: Option<BTreeMap<String, String>> = None;
    let mut apply = |ev: watcher::Event<ConfigMap>,
                     state: &mut BTreeMap<String, String>,
                     seen: &mut BTreeSet<(String, String)>| {
        match ev {
            watcher::Event::Init => relist = Some(BTreeMap::new()),
            watcher::Event::InitApply(o) => {
                let (n, v) = (o.metadata.name.clone().unwrap_or_default(), value_of(&o));
                seen.insert((n.clone(), v.clone()));
                if let Some(r) = relist.as_mut() {
                    r.insert(n, v);
                }
            }
            watcher::Event::InitDone => {
                if let Some(r) = relist.take() {
                    *state = r;
                }
            }
            watcher::Event::Apply(o) => {
                let (n, v) = (o.metadata.name.clone().unwrap_or_default(), value_of(&o));
                seen.insert((n.clone(), v.clone()));
                state.insert(n, v);
            }
            watcher::Event::Delete(o) => {
                state.remove(&o.metadata.name.unwrap_or_default());
            }
        }
    };

    // Writers: 120 creates, an update of each, and every third deleted, paced over a few
    // seconds so many watches are dropped in between.
    let write = tokio::spawn(async move {
        for i in 0..120 {
            let name = format!("cm-{i:03}");
            writer
                .create(&PostParams::default(), &cm(&name, "0")?)
                .await?;
            if i % 10 == 9 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        for i in 0..120 {
            let name = format!("cm-{i:03}");
            let p = serde_json::json!({ "data": { "v": "1" } });
            writer
                .patch(&name, &PatchParams::default(), &Patch::Merge(&p))
                .await?;
            if i % 3 == 0 {
                writer.delete(&name, &DeleteParams::default()).await?;
            }
            if i % 10 == 9 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        anyhow::Ok(())
    });

    let mut errors = 0usize;
    let mut writes_done = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut write = write;
    loop {
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the watcher did not converge: {} objects, {errors} watch errors",
                state.len()
            );
        }
        tokio::select! {
            joined = &mut write, if !writes_done => {
                joined??;
                writes_done = true;
            }
            ev = tokio::time::timeout(Duration::from_millis(500), events.next()) => match ev {
                Ok(Some(Ok(ev))) => apply(ev, &mut state, &mut seen),
                // Resets surface as errors the watcher recovers from (with backoff).
                Ok(Some(Err(_))) => errors += 1,
                Ok(None) => bail!("the watcher stream ended"),
                Err(_) => {}
            },
        }
        if writes_done {
            let expected: BTreeMap<String, String> = (0..120)
                .filter(|i| i % 3 != 0)
                .map(|i| (format!("cm-{i:03}"), "1".to_string()))
                .collect();
            if state == expected {
                break;
            }
        }
    }
    // Every object's creation was delivered (as an event or in a relist), not only the
    // final state.
    for i in 0..120 {
        let name = format!("cm-{i:03}");
        let created_seen = seen.contains(&(name.clone(), "0".to_string()));
        let updated_seen = seen.contains(&(name.clone(), "1".to_string()));
        ensure!(
            created_seen || updated_seen,
            "{name} was never seen by the watcher"
        );
        if i % 3 != 0 {
            ensure!(updated_seen, "{name}'s update was never seen");
        }
    }
    Ok(())
}
