//! The observer against the ECI emulator over real HTTP (production client) and the
//! in-memory Kubernetes API: status flow, events, orphans, vanished groups, failed listings.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::events::Reporter;
use kube::runtime::watcher;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use vnode_eci::model::{Container, CreateContainerGroupRequest, Tag};
use vnode_eci::{Credentials, EciClient, EciClientConfig, RateLimits, RetryPolicy};
use vnode_eci_emulator::{EmulatorConfig, FaultKind, FaultRule, Profile};

use super::observer::{Observer, ObserverSettings};
use super::{GroupIndex, annotations, tags};
use crate::metrics::Metrics;
use crate::pods::store::{PodStoreWriter, pod_store};
use crate::testing::FakeApi;

struct Fixture {
    fake: FakeApi,
    eci: Arc<EciClient>,
    index: Arc<GroupIndex>,
    metrics: Arc<Metrics>,
    token: CancellationToken,
    events: Arc<Mutex<Vec<Value>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

fn pod_path(ns: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{ns}/pods/{name}")
}

fn pod_json(name: &str, uid: &str, group: Option<&str>) -> Value {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": uid},
        "spec": {"nodeName": "vk", "containers": [{"name": "web", "image": "nginx:1.25"}]},
        "status": {"phase": "Pending"}
    });
    if let Some(g) = group {
        p["metadata"]["annotations"] = json!({ annotations::GROUP_ID: g });
    }
    p
}

/// Starts the emulator (instant lifecycle, quotas lifted, optional faults), the fake API with
/// `pods`, a pod store mirroring the fake (like the watch would), and the observer.
async fn fixture(pods: Vec<Value>, faults: Vec<FaultRule>, min_age: Duration) -> Fixture {
    crate::testing::install_crypto();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut profile = Profile::instant();
    profile.faults = faults;
    let config = EmulatorConfig {
        profile,
        ..EmulatorConfig::default()
    }
    .lift_quotas();
    let (ak, sk) = (
        config.access_key_id.clone(),
        config.access_key_secret.clone(),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(vnode_eci_emulator::serve(listener, config, async move {
        let _ = stop_rx.await;
    }));
    let eci = Arc::new(
        EciClient::new(EciClientConfig {
            endpoint: Some(format!("http://{addr}")),
            rate_limits: RateLimits::unlimited(),
            retry: RetryPolicy::none(),
            ..EciClientConfig::new("cn-hangzhou", Credentials::new(ak, sk))
        })
        .expect("client"),
    );

    let fake = FakeApi::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    {
        let events = events.clone();
        fake.set_handler(move |req| {
            if req.method == http::Method::POST && req.path.ends_with("/events") {
                events.lock().push(req.body.clone());
            }
            None
        });
    }
    for p in &pods {
        let name = p["metadata"]["name"].as_str().expect("name");
        fake.put(&pod_path("default", name), p.clone());
    }
    let (store, writer) = pod_store();
    let token = CancellationToken::new();
    tokio::spawn(mirror_store(fake.clone(), writer, token.clone()));

    let index = Arc::new(GroupIndex::new());
    let metrics = Arc::new(Metrics::new());
    let observer = Observer::new(
        fake.client(),
        eci.clone(),
        store,
        index.clone(),
        ObserverSettings {
            cluster: "c1".into(),
            node: "vk".into(),
            poll_interval: Duration::from_millis(100),
            resync_interval: Duration::from_millis(700),
            reconcile_interval: Duration::from_millis(300),
            orphan_min_age: min_age,
        },
        metrics.clone(),
        Reporter {
            controller: "vnode".into(),
            instance: Some("test".into()),
        },
    );
    tokio::spawn(observer.run(token.clone()));
    Fixture {
        fake,
        eci,
        index,
        metrics,
        token,
        events,
        _stop: stop_tx,
    }
}

/// Feeds the store from the fake API every 50 ms, as the pod watch does.
async fn mirror_store(fake: FakeApi, mut writer: PodStoreWriter, token: CancellationToken) {
    let api: kube::Api<Pod> = kube::Api::namespaced(fake.client(), "default");
    loop {
        let pods: Vec<Pod> = match api.list(&Default::default()).await {
            Ok(list) => list.items,
            Err(_) => Vec::new(),
        };
        writer.apply_watcher_event(&watcher::Event::Init);
        for p in pods {
            writer.apply_watcher_event(&watcher::Event::InitApply(p));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

async fn create_group(eci: &EciClient, name: &str, uid: &str, pod: &str) -> String {
    eci.create_container_group(&CreateContainerGroupRequest {
        container_group_name: name.into(),
        containers: vec![Container {
            name: "web".into(),
            image: "nginx:1.25".into(),
            ..Default::default()
        }],
        tags: vec![
            Tag::new(tags::CLUSTER, "c1"),
            Tag::new(tags::NODE, "vk"),
            Tag::new(tags::NAMESPACE, "default"),
            Tag::new(tags::POD_NAME, pod),
            Tag::new(tags::POD_UID, uid),
        ],
        ..Default::default()
    })
    .await
    .expect("create")
    .container_group_id
}

async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..150 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Whether ECI still has the group (asked through the status API, which the fault
/// injection of these tests leaves alone).
async fn group_exists(eci: &EciClient, id: &str) -> bool {
    let found = eci
        .describe_container_group_status_by_ids(&[id.to_string()], None)
        .await
        .expect("status");
    found.iter().any(|g| g.container_group_id == id)
}

#[tokio::test]
async fn a_running_group_becomes_pod_status_once_and_its_events_are_mirrored_once() {
    let fx = fixture(
        vec![pod_json("web", "u-1", None)],
        Vec::new(),
        Duration::from_secs(3600),
    )
    .await;
    let id = create_group(&fx.eci, "web-1", "u-1", "web").await;
    let status = eventually("Running status with an IP", || {
        let p = fx.fake.get(&pod_path("default", "web"))?;
        (p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string())
            .then(|| p["status"].clone())
    })
    .await;
    let ready = status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Ready")
        .expect("Ready");
    assert_eq!(ready["status"], "True");
    let cs = &status["containerStatuses"][0];
    assert_eq!(cs["name"], "web");
    assert!(cs["state"]["running"].is_object(), "{cs}");
    assert!(
        cs["imageID"].as_str().is_some_and(|s| s.contains("sha256")),
        "digest from the status API: {cs}"
    );
    assert_eq!(
        fx.index.get("u-1").and_then(|e| e.status).as_deref(),
        Some("Running")
    );
    assert_eq!(fx.index.get("u-1").map(|e| e.id), Some(id.clone()));

    // Several polls, resyncs and sweeps later: no further writes, no repeated events.
    let writes = fx.fake.count(
        &http::Method::PATCH,
        "/api/v1/namespaces/default/pods/web/status",
    );
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_eq!(
        fx.fake.count(
            &http::Method::PATCH,
            "/api/v1/namespaces/default/pods/web/status"
        ),
        writes,
        "an unchanged status is never rewritten"
    );
    let events = fx.events.lock().clone();
    let mut seen = std::collections::HashSet::new();
    for e in &events {
        let key = (e["reason"].clone(), e["note"].clone());
        assert!(seen.insert(key), "duplicate event {e}");
    }
    assert!(
        events.iter().any(|e| e["reason"] == "Started"),
        "ECI's Started event mirrored: {events:?}"
    );
    assert!(
        fx.metrics
            .encode()
            .contains("vnode_pod_status_writes_total{result=\"ok\"}")
    );
    assert!(
        group_exists(&fx.eci, &id).await,
        "a live group is never deleted"
    );
}

#[tokio::test]
async fn orphans_are_deleted_only_when_the_pod_is_confirmed_gone() {
    let fx = fixture(Vec::new(), Vec::new(), Duration::from_millis(200)).await;
    // The pod store does not have any of these pods.
    let gone = create_group(&fx.eci, "gone-1", "u-gone", "gone").await;
    let replaced = create_group(&fx.eci, "replaced-1", "u-old", "replaced").await;
    let lagging = create_group(&fx.eci, "lagging-1", "u-lag", "lagging").await;
    // `replaced` exists with another UID; `lagging` exists with the group's UID but the store
    // (a watch that is behind) does not show it: the fake answers the GET, not the store.
    fx.fake.set_handler({
        let events = fx.events.clone();
        move |req| {
            if req.method == http::Method::POST && req.path.ends_with("/events") {
                events.lock().push(req.body.clone());
            }
            if req.method == http::Method::GET && req.path == pod_path("default", "replaced") {
                return Some((200, pod_json("replaced", "u-new", None)));
            }
            if req.method == http::Method::GET && req.path == pod_path("default", "lagging") {
                return Some((200, pod_json("lagging", "u-lag", None)));
            }
            None
        }
    });
    let eci = fx.eci.clone();
    for id in [&gone, &replaced] {
        let mut deleted = false;
        for _ in 0..150 {
            if !group_exists(&eci, id).await {
                deleted = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        assert!(deleted, "{id} deleted");
    }
    assert!(group_exists(&eci, &lagging).await, "the pod exists: kept");
    assert!(fx.index.get("u-gone").is_none());
    assert!(fx.index.get("u-lag").is_some());
    let metrics = fx.metrics.encode();
    assert!(
        metrics.contains("vnode_reconcile_results_total{result=\"orphan_deleted\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_failed_listing_changes_nothing_and_deletes_nothing() {
    // Every listing fails for a while; a pod's group is created meanwhile.
    let faults = vec![FaultRule {
        actions: vec!["DescribeContainerGroups".into()],
        kind: FaultKind::Error,
        first: Some(6),
        ..FaultRule::default()
    }];
    let fx = fixture(Vec::new(), faults, Duration::ZERO).await;
    let orphan = create_group(&fx.eci, "orphan-1", "u-x", "x").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!fx.index.is_listed(), "no complete listing yet");
    assert!(
        group_exists(&fx.eci, &orphan).await,
        "nothing deleted on a failed listing"
    );
    let metrics = fx.metrics.encode();
    assert!(
        metrics.contains("vnode_group_listings_total{result=\"failed\"}"),
        "{metrics}"
    );
    // Once listings succeed (backoff 1 s, 2 s, …), the orphan goes.
    let eci = fx.eci.clone();
    let mut deleted = false;
    for _ in 0..400 {
        if !group_exists(&eci, &orphan).await {
            deleted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(deleted, "deleted after a complete listing");
    assert!(fx.index.is_listed());
}

#[tokio::test]
async fn a_vanished_group_fails_its_pod_but_not_a_deleting_one() {
    let mut deleting = pod_json("bye", "u-bye", Some("eci-bye"));
    deleting["metadata"]["deletionTimestamp"] = json!("2026-11-25T18:00:00Z");
    let fx = fixture(
        vec![
            pod_json("lost", "u-lost", Some("eci-doesnotexist0000001")),
            deleting,
        ],
        Vec::new(),
        Duration::from_secs(3600),
    )
    .await;
    let status = eventually("Failed status", || {
        let p = fx.fake.get(&pod_path("default", "lost"))?;
        (p["status"]["phase"] == "Failed").then(|| p["status"].clone())
    })
    .await;
    assert_eq!(status["reason"], "ContainerGroupVanished");
    assert_eq!(
        status["containerStatuses"][0]["state"]["terminated"]["reason"],
        "ContainerStatusUnknown"
    );
    let bye = fx.fake.get(&pod_path("default", "bye")).expect("pod");
    assert_eq!(
        bye["status"]["phase"], "Pending",
        "a deleting pod is left alone"
    );
    assert!(
        fx.events
            .lock()
            .iter()
            .any(|e| e["reason"] == "ContainerGroupVanished"),
        "warning event"
    );
}

#[tokio::test]
async fn the_zone_eci_picked_is_annotated_on_the_pod() {
    // A placement offering vSwitches in several zones lets ECI choose, so the create path
    // cannot know the zone; the observer annotates it from the group.
    let fx = fixture(
        vec![pod_json("web", "u-z", None)],
        Vec::new(),
        Duration::from_secs(3600),
    )
    .await;
    let id = create_group(&fx.eci, "web-z", "u-z", "web").await;
    let listed = fx
        .eci
        .describe_all_container_groups(&vnode_eci::model::DescribeContainerGroupsRequest {
            container_group_ids: vec![id.clone()],
            ..Default::default()
        })
        .await
        .expect("describe");
    let zone = listed
        .iter()
        .find(|g| g.container_group_id == id)
        .map(|g| g.zone_id.clone())
        .expect("the group is listed");
    assert!(!zone.is_empty(), "the emulator reports a zone");
    let annotated = eventually("the zone annotation", || {
        let p = fx.fake.get(&pod_path("default", "web"))?;
        p["metadata"]["annotations"][annotations::ZONE]
            .as_str()
            .map(String::from)
    })
    .await;
    assert_eq!(annotated, zone);
}

#[tokio::test]
async fn the_sweep_alone_repairs_status_of_adopted_and_indexed_groups() {
    // Every status call fails: only the listing (reduced page by page) can write status.
    let faults = vec![FaultRule {
        actions: vec!["DescribeContainerGroupStatus".into()],
        kind: FaultKind::Error,
        first: Some(u64::MAX),
        ..FaultRule::default()
    }];
    let fx = fixture(
        vec![pod_json("web", "u-1", None), pod_json("api", "u-2", None)],
        faults,
        Duration::from_secs(3600),
    )
    .await;
    // Created outside the pod path: the index learns them only from a listing, which adopts
    // them (once the store is ready) and writes their pods' status.
    let web = create_group(&fx.eci, "web-1", "u-1", "web").await;
    let api = create_group(&fx.eci, "api-1", "u-2", "api").await;
    for name in ["web", "api"] {
        eventually("Running status from the sweep", || {
            let p = fx.fake.get(&pod_path("default", name))?;
            (p["status"]["phase"] == "Running").then_some(())
        })
        .await;
    }
    assert_eq!(fx.index.get("u-1").map(|e| e.id), Some(web));
    assert_eq!(fx.index.get("u-2").map(|e| e.id), Some(api));
    // Drift on a pod whose group is indexed now: repaired from the listing's page.
    fx.fake
        .put(&pod_path("default", "web"), pod_json("web", "u-1", None));
    eventually("status repaired again", || {
        let p = fx.fake.get(&pod_path("default", "web"))?;
        (p["status"]["phase"] == "Running").then_some(())
    })
    .await;
    let metrics = fx.metrics.encode();
    assert!(
        metrics.contains("vnode_reconcile_results_total{result=\"status_repaired\"}"),
        "{metrics}"
    );
}
