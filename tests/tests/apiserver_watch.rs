//! kube-rs against `vnode apiserver`: watch resumption from a resourceVersion, 410 Gone
//! and the watcher's relist, bookmarks, `timeoutSeconds`, a connection dropped in the middle
//! of a watch, optimistic concurrency and preconditions.
//!
//! Connection drops are made by a small TCP relay in the test that sits between the
//! client and the server and can cut every connection (and refuse new ones for a while).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions, WatchEvent,
    WatchParams,
};
use kube::runtime::watcher;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use vnode_tests::VnodeProcess;

struct Server {
    _proc: VnodeProcess,
    _dir: tempfile::TempDir,
    addr: SocketAddr,
    kubeconfig: std::path::PathBuf,
}

fn start(window: usize) -> Result<Server> {
    let dir = tempfile::tempdir()?;
    let d = dir.path().to_str().context("utf-8")?.to_string();
    let w = window.to_string();
    let proc = VnodeProcess::start(
        &[
            "apiserver",
            "--listen",
            "127.0.0.1:0",
            "--dir",
            &d,
            "--watch-window",
            &w,
            "--bookmark-interval-secs",
            "1",
        ],
        Duration::from_secs(30),
    )?;
    let addr: SocketAddr = proc.url.trim_start_matches("https://").parse()?;
    let kubeconfig = dir.path().join("kubeconfig");
    Ok(Server {
        _proc: proc,
        _dir: dir,
        addr,
        kubeconfig,
    })
}

/// A kube client for `server`, optionally pointed at another address (the relay).
async fn client(server: &Server, via: Option<SocketAddr>) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(&server.kubeconfig)?;
    let mut cfg =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    if let Some(addr) = via {
        cfg.cluster_url = format!("https://{addr}").parse()?;
    }
    cfg.read_timeout = Some(Duration::from_secs(60));
    Ok(kube::Client::try_from(cfg)?)
}

fn cm(name: &str) -> Result<ConfigMap> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": name }, "data": { "k": name },
    }))?)
}

/// A TCP relay whose connections can be cut, and which can refuse new ones.
struct Relay {
    addr: SocketAddr,
    cut: watch::Sender<u64>,
    refusing: Arc<AtomicBool>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (cut, _) = watch::channel(0u64);
        let refusing = Arc::new(AtomicBool::new(false));
        let cut_tx = cut.clone();
        let refuse = refusing.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if refuse.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut_rx = cut_tx.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Ok(Self {
            addr,
            cut,
            refusing,
        })
    }

    fn cut_all(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

#[tokio::test]
async fn watch_resumes_from_a_resource_version() -> Result<()> {
    let s = start(1000)?;
    let api: Api<ConfigMap> = Api::default_namespaced(client(&s, None).await?);
    let a = api.create(&PostParams::default(), &cm("a")?).await?;
    let rv = a.metadata.resource_version.context("rv")?;
    api.create(&PostParams::default(), &cm("b")?).await?;
    api.create(&PostParams::default(), &cm("c")?).await?;
    api.delete("a", &DeleteParams::default()).await?;
    let mut stream = api
        .watch(&WatchParams::default().timeout(10), &rv)
        .await?
        .boxed();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await?? {
            Some(WatchEvent::Added(o)) => {
                seen.push(format!("ADDED {}", o.metadata.name.unwrap_or_default()))
            }
            Some(WatchEvent::Deleted(o)) => {
                seen.push(format!("DELETED {}", o.metadata.name.unwrap_or_default()))
            }
            Some(WatchEvent::Bookmark(_)) => {}
            Some(other) => bail!("unexpected {other:?}"),
            None => bail!("watch ended early"),
        }
    }
    ensure!(seen == ["ADDED b", "ADDED c", "DELETED a"], "{seen:?}");
    // Label and field selectors filter the stream.
    let mut sel = api
        .watch(
            &WatchParams::default().fields("metadata.name=z").timeout(10),
            &rv,
        )
        .await?
        .boxed();
    api.create(&PostParams::default(), &cm("y")?).await?;
    api.create(&PostParams::default(), &cm("z")?).await?;
    match tokio::time::timeout(Duration::from_secs(5), sel.try_next()).await?? {
        Some(WatchEvent::Added(o)) => ensure!(o.metadata.name.as_deref() == Some("z")),
        other => bail!("unexpected {other:?}"),
    }
    Ok(())
}

/// `timeoutSeconds` ends a watch cleanly after that time (the client then re-watches from its
/// last version), and only that watch: one asking for longer stays open.
#[tokio::test]
async fn a_watch_ends_after_its_timeout_seconds() -> Result<()> {
    let s = start(1000)?;
    let api: Api<ConfigMap> = Api::default_namespaced(client(&s, None).await?);
    let rv = api
        .create(&PostParams::default(), &cm("t")?)
        .await?
        .metadata
        .resource_version
        .context("rv")?;
    let mut long = api
        .watch(&WatchParams::default().timeout(60), &rv)
        .await?
        .boxed();
    let started = std::time::Instant::now();
    let mut short = api
        .watch(&WatchParams::default().timeout(1), &rv)
        .await?
        .boxed();
    // Bookmarks may arrive; the stream must then end by itself.
    loop {
        match tokio::time::timeout(Duration::from_secs(20), short.try_next()).await {
            Err(_) => bail!("a watch with timeoutSeconds=1 was still open after 20 s"),
            Ok(Err(e)) => bail!("the watch failed instead of ending: {e}"),
            Ok(Ok(Some(WatchEvent::Bookmark(_)))) => {}
            Ok(Ok(Some(other))) => bail!("unexpected {other:?}"),
            Ok(Ok(None)) => break,
        }
    }
    let lasted = started.elapsed();
    ensure!(
        lasted >= Duration::from_millis(900),
        "ended after {lasted:?}, before its 1 s"
    );
    // The 60 s watch is still open: nothing but bookmarks, no end.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    loop {
        match tokio::time::timeout_at(deadline, long.try_next()).await {
            Err(_) => break,
            Ok(Ok(Some(WatchEvent::Bookmark(_)))) => {}
            Ok(other) => bail!("the 60 s watch did not stay open: {other:?}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn too_old_resource_version_is_410_gone() -> Result<()> {
    let s = start(10)?;
    let api: Api<ConfigMap> = Api::default_namespaced(client(&s, None).await?);
    let first = api.create(&PostParams::default(), &cm("first")?).await?;
    let rv = first.metadata.resource_version.context("rv")?;
    for i in 0..15 {
        api.create(&PostParams::default(), &cm(&format!("n{i}"))?)
            .await?;
    }
    let mut stream = api
        .watch(&WatchParams::default().timeout(10), &rv)
        .await?
        .boxed();
    match tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await?? {
        Some(WatchEvent::Error(e)) => {
            ensure!(e.code == 410 && e.reason == "Expired", "{e:?}");
            ensure!(e.message.starts_with("too old resource version"), "{e:?}");
        }
        other => bail!("expected a 410 error event, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn bookmarks_arrive_and_carry_the_latest_version() -> Result<()> {
    let s = start(1000)?;
    let api: Api<ConfigMap> = Api::default_namespaced(client(&s, None).await?);
    let list = api.list(&ListParams::default()).await?;
    let rv = list.metadata.resource_version.context("rv")?;
    let mut stream = api
        .watch(&WatchParams::default().timeout(10), &rv)
        .await?
        .boxed();
    // A change in another namespace moves the global version; the bookmark reports it.
    let other: Api<ConfigMap> = Api::namespaced(client(&s, None).await?, "kube-system");
    let made = other
        .create(&PostParams::default(), &cm("elsewhere")?)
        .await?;
    let made_rv: u64 = made.metadata.resource_version.context("rv")?.parse()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let ev = tokio::time::timeout_at(deadline, stream.try_next()).await??;
        match ev {
            Some(WatchEvent::Bookmark(b)) => {
                let brv: u64 = b.metadata.resource_version.parse()?;
                if brv >= made_rv {
                    return Ok(());
                }
            }
            Some(other) => bail!("unexpected {other:?}"),
            None => bail!("watch ended"),
        }
    }
}

type Events =
    futures::stream::BoxStream<'static, Result<watcher::Event<ConfigMap>, watcher::Error>>;

async fn next(events: &mut Events) -> Result<watcher::Event<ConfigMap>> {
    match tokio::time::timeout(Duration::from_secs(20), events.next()).await {
        Ok(Some(Ok(e))) => Ok(e),
        Ok(Some(Err(e))) => Err(anyhow::anyhow!("watcher error: {e}")),
        Ok(None) => bail!("watcher ended"),
        Err(_) => bail!("no watcher event within 20 s"),
    }
}

fn names(objs: &[ConfigMap]) -> Vec<String> {
    let mut v: Vec<String> = objs
        .iter()
        .filter_map(|o| o.metadata.name.clone())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn watcher_survives_a_dropped_connection_and_relists_after_410() -> Result<()> {
    let s = start(20)?;
    let relay = Relay::start(s.addr).await?;
    let direct: Api<ConfigMap> = Api::default_namespaced(client(&s, None).await?);
    let via: Api<ConfigMap> = Api::default_namespaced(client(&s, Some(relay.addr)).await?);
    direct
        .create(&PostParams::default(), &cm("before")?)
        .await?;

    let cfg = watcher::Config::default().labels("!ignored").timeout(30);
    let mut events: Events = watcher(via, cfg).boxed();
    // Initial list: Init, InitApply(before, kube-root-ca.crt), InitDone.
    let mut initial = Vec::new();
    loop {
        match next(&mut events).await? {
            watcher::Event::Init => {}
            watcher::Event::InitApply(o) => initial.push(o),
            watcher::Event::InitDone => break,
            other => bail!("unexpected {other:?}"),
        }
    }
    ensure!(
        names(&initial).contains(&"before".to_string()),
        "{:?}",
        names(&initial)
    );

    // 1. A cut inside the window: the watcher resumes and sees the next change as a plain
    //    Apply, without a relist.
    relay.cut_all();
    tokio::time::sleep(Duration::from_millis(200)).await;
    direct
        .create(&PostParams::default(), &cm("during-short-cut")?)
        .await?;
    loop {
        match next(&mut events).await {
            Ok(watcher::Event::Apply(o)) => {
                ensure!(
                    o.metadata.name.as_deref() == Some("during-short-cut"),
                    "{o:?}"
                );
                break;
            }
            Ok(other) => bail!("expected a resumed Apply, got {other:?}"),
            // The cut itself surfaces as an error the watcher recovers from.
            Err(_) => continue,
        }
    }

    // 2. A long outage: more changes than the window holds, then reconnect. The resumed
    //    watch gets 410 Gone and the watcher relists, so it sees the current state.
    relay.refusing.store(true, Ordering::SeqCst);
    relay.cut_all();
    for i in 0..30 {
        direct
            .create(&PostParams::default(), &cm(&format!("outage-{i:02}"))?)
            .await?;
    }
    direct.delete("before", &DeleteParams::default()).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.refusing.store(false, Ordering::SeqCst);
    let mut relisted = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while tokio::time::Instant::now() < deadline {
        match next(&mut events).await {
            Ok(watcher::Event::Init) => {
                let mut objs = Vec::new();
                loop {
                    match next(&mut events).await? {
                        watcher::Event::InitApply(o) => objs.push(o),
                        watcher::Event::InitDone => break,
                        other => bail!("unexpected during relist: {other:?}"),
                    }
                }
                relisted = Some(objs);
                break;
            }
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                bail!("watch resumed past a window it cannot have had")
            }
            Ok(other) => bail!("unexpected {other:?}"),
            Err(_) => continue,
        }
    }
    let objs = relisted.context("the watcher never relisted")?;
    let n = names(&objs);
    ensure!(
        !n.contains(&"before".to_string()),
        "deleted object in relist: {n:?}"
    );
    ensure!(
        n.contains(&"outage-29".to_string()) && n.contains(&"during-short-cut".to_string()),
        "{n:?}"
    );
    Ok(())
}

#[tokio::test]
async fn conflicts_preconditions_and_status_codes() -> Result<()> {
    let s = start(1000)?;
    let api: Api<ConfigMap> = Api::default_namespaced(client(&s, None).await?);
    let created = api.create(&PostParams::default(), &cm("x")?).await?;
    let mut stale = created.clone();
    let mut fresh = created.clone();
    fresh.data = Some([("k".to_string(), "v2".to_string())].into());
    api.replace("x", &PostParams::default(), &fresh).await?;
    stale.data = Some([("k".to_string(), "v3".to_string())].into());
    match api.replace("x", &PostParams::default(), &stale).await {
        Err(kube::Error::Api(e)) => ensure!(e.code == 409 && e.reason == "Conflict", "{e:?}"),
        other => bail!("stale update: {other:?}"),
    }
    // A merge patch with a resourceVersion is conditional too.
    let p = serde_json::json!({ "metadata": { "resourceVersion": created.metadata.resource_version }, "data": { "k": "v4" } });
    match api
        .patch("x", &PatchParams::default(), &Patch::Merge(&p))
        .await
    {
        Err(kube::Error::Api(e)) => ensure!(e.code == 409, "{e:?}"),
        other => bail!("stale patch: {other:?}"),
    }
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("not-the-uid".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete("x", &dp).await {
        Err(kube::Error::Api(e)) => ensure!(
            e.code == 409 && e.message.contains("Precondition failed: UID"),
            "{e:?}"
        ),
        other => bail!("precondition: {other:?}"),
    }
    match api.get("missing").await {
        Err(kube::Error::Api(e)) => ensure!(e.code == 404 && e.reason == "NotFound", "{e:?}"),
        other => bail!("missing: {other:?}"),
    }
    // Finalizers hold deletion until removed.
    let p = serde_json::json!({ "metadata": { "finalizers": ["example.com/hold"] } });
    api.patch("x", &PatchParams::default(), &Patch::Merge(&p))
        .await?;
    api.delete("x", &DeleteParams::default()).await?;
    let held = api.get("x").await?;
    ensure!(held.metadata.deletion_timestamp.is_some(), "{held:?}");
    let p = serde_json::json!({ "metadata": { "finalizers": null } });
    api.patch("x", &PatchParams::default(), &Patch::Merge(&p))
        .await?;
    ensure!(
        api.get_opt("x").await?.is_none(),
        "finalized object still present"
    );
    // Server-side apply creates, then merges.
    let ssa = PatchParams::apply("vnode-test");
    let obj = serde_json::json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "applied" }, "data": { "a": "1" } });
    api.patch("applied", &ssa, &Patch::Apply(&obj)).await?;
    let obj = serde_json::json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "applied" }, "data": { "b": "2" } });
    let got = api.patch("applied", &ssa, &Patch::Apply(&obj)).await?;
    ensure!(
        got.data
            .as_ref()
            .and_then(|d| d.get("b"))
            .map(String::as_str)
            == Some("2"),
        "{got:?}"
    );
    // Paging: limit + continue walks everything exactly once.
    for i in 0..7 {
        api.create(&PostParams::default(), &cm(&format!("page-{i}"))?)
            .await?;
    }
    let mut seen = Vec::new();
    let mut lp = ListParams::default().limit(3);
    loop {
        let page = api.list(&lp).await?;
        seen.extend(page.items.into_iter().filter_map(|o| o.metadata.name));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    let pages: Vec<&String> = seen.iter().filter(|n| n.starts_with("page-")).collect();
    ensure!(pages.len() == 7, "{seen:?}");
    // remainingItemCount comes with an unfiltered page only (upstream leaves it out when a
    // selector filters: the count would be a guess).
    let first = api.list(&ListParams::default().limit(3)).await?;
    ensure!(
        first.metadata.remaining_item_count.is_some_and(|n| n >= 4),
        "{:?}",
        first.metadata
    );
    let filtered = api
        .list(&ListParams::default().limit(3).labels("!not-set"))
        .await?;
    ensure!(
        filtered.metadata.continue_.is_some() && filtered.metadata.remaining_item_count.is_none(),
        "{:?}",
        filtered.metadata
    );
    Ok(())
}

#[tokio::test]
async fn events_k8s_io_events_are_core_events_too() -> Result<()> {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event;
    let s = start(1000)?;
    let client = client(&s, None).await?;
    let events: Api<Event> = Api::default_namespaced(client.clone());
    let ev: Event = serde_json::from_value(serde_json::json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": { "name": "nginx.1" },
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "vnode.example/daemon", "reportingInstance": "vnode-1",
        "action": "Create", "reason": "Created", "type": "Normal",
        "note": "created container group eci-123",
        "regarding": { "kind": "Pod", "namespace": "default", "name": "nginx", "apiVersion": "v1" },
    }))?;
    events.create(&PostParams::default(), &ev).await?;
    let core: Api<CoreEvent> = Api::default_namespaced(client);
    let found = core
        .list(&ListParams::default().fields("involvedObject.name=nginx,involvedObject.kind=Pod"))
        .await?;
    let e = found
        .items
        .first()
        .context("the event is not visible as a core/v1 event")?;
    ensure!(
        e.message.as_deref() == Some("created container group eci-123"),
        "{e:?}"
    );
    ensure!(
        e.reporting_component.as_deref() == Some("vnode.example/daemon"),
        "{e:?}"
    );
    let back = events.get("nginx.1").await?;
    ensure!(
        back.note.as_deref() == Some("created container group eci-123"),
        "{back:?}"
    );
    ensure!(back.regarding.and_then(|r| r.name).as_deref() == Some("nginx"));
    Ok(())
}
