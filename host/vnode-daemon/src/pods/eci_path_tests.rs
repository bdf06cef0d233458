//! The production pod path against the ECI emulator on loopback (real HTTP, the production
//! client), the built-in plugins, and the in-memory Kubernetes API.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use vnode_eci::model::{Container, CreateContainerGroupRequest, DescribeContainerGroupsRequest};
use vnode_eci::{Credentials, EciClient, EciClientConfig, RateLimits};
use vnode_eci_emulator::{EmulatorConfig, Profile};
use vnode_plugin_host::{
    PluginEngine, PluginKind, PluginLoader, PluginSlot, PluginSource, RuntimeConfig, builtin,
};

use super::*;
use crate::metrics::Metrics;
use crate::pods::queue::KeyedQueue;
use crate::pods::state::PodState;
use crate::pods::{PodController, controller};
use crate::testing::FakeApi;

const NS_EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events/";

/// The built-in plugins, loaded once per test binary (compiling them is the slow part).
fn slots() -> (Arc<PluginSlot>, Arc<PluginSlot>) {
    static SLOTS: OnceLock<(Arc<PluginSlot>, Arc<PluginSlot>)> = OnceLock::new();
    SLOTS
        .get_or_init(|| {
            let engine = PluginEngine::new(RuntimeConfig::default()).expect("engine");
            let loader = PluginLoader::new(engine, None);
            let load = |bytes: &[u8], kind| {
                let source = PluginSource {
                    bytes: bytes.to_vec(),
                    path: None,
                };
                Arc::new(PluginSlot::new(
                    loader
                        .load_blocking(&source, Some(kind), "")
                        .expect("built-in plugin loads"),
                ))
            };
            (
                load(builtin::ZONE_SPREAD, PluginKind::Placement),
                load(builtin::TRANSLATOR_DEFAULT, PluginKind::Translator),
            )
        })
        .clone()
}

struct Fixture {
    fake: FakeApi,
    eci: EciClient,
    index: Arc<GroupIndex>,
    ctl: Arc<PodController<EciPodPath>>,
    writer: crate::pods::store::PodStoreWriter,
    queue: KeyedQueue,
    token: CancellationToken,
    metrics: Arc<Metrics>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn fixture(profile: Profile) -> Fixture {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
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
    let eci = EciClient::new(EciClientConfig {
        endpoint: Some(format!("http://{addr}")),
        rate_limits: RateLimits::unlimited(),
        ..EciClientConfig::new("cn-hangzhou", Credentials::new(ak, sk))
    })
    .expect("client");
    let fake = FakeApi::new();
    let index = Arc::new(GroupIndex::new());
    let metrics = Arc::new(Metrics::new());
    let (placement, translator) = slots();
    let node = NodeSettings {
        node_name: "vk".into(),
        cluster_name: "test".into(),
        region: "cn-hangzhou".into(),
        security_group: "sg-test".into(),
        vswitches: vec![
            ZoneVswitch {
                zone_id: "cn-hangzhou-h".into(),
                vswitch_id: "vsw-h".into(),
            },
            ZoneVswitch {
                zone_id: "cn-hangzhou-i".into(),
                vswitch_id: "vsw-i".into(),
            },
        ],
        cluster_dns: vec!["10.96.0.10".into()],
        cluster_domain: "cluster.local".into(),
        candidate_specs: default_specs(),
    };
    let path = EciPodPath::new(
        fake.client(),
        eci.clone(),
        placement,
        translator,
        index.clone(),
        metrics.clone(),
        node,
    );
    let (ctl, writer) = controller(
        fake.client(),
        "vk".into(),
        "test".into(),
        path,
        metrics.clone(),
    );
    let (queue, _rx) = KeyedQueue::new(Default::default());
    Fixture {
        fake,
        eci,
        index,
        ctl,
        writer,
        queue,
        token: CancellationToken::new(),
        metrics,
        _stop: stop_tx,
    }
}

fn pod_json(name: &str, uid: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": uid,
                     "creationTimestamp": "2026-11-25T18:00:00Z"},
        "spec": {
            "nodeName": "vk",
            "restartPolicy": "Always",
            "containers": [{"name": "nginx", "image": "nginx", "imagePullPolicy": "Always"}]
        }
    })
}

impl Fixture {
    /// Puts the pod into the API and the controller's store.
    fn apply(&mut self, v: &Value) {
        let name = v["metadata"]["name"].as_str().expect("name");
        let path = format!("/api/v1/namespaces/default/pods/{name}");
        self.fake.put(&path, v.clone());
        let stored = self.fake.get(&path).expect("stored");
        let pod: Pod = serde_json::from_value(stored).expect("pod");
        self.writer.apply_watcher_event(&watcher::Event::Apply(pod));
    }

    /// Re-reads the pod from the API into the store (what the watch would deliver).
    fn sync(&mut self, name: &str) {
        if let Some(v) = self
            .fake
            .get(&format!("/api/v1/namespaces/default/pods/{name}"))
        {
            let pod: Pod = serde_json::from_value(v).expect("pod");
            self.writer.apply_watcher_event(&watcher::Event::Apply(pod));
        }
    }

    async fn work(&self, name: &str) {
        self.ctl
            .work(&format!("default/{name}"), &self.queue, &self.token)
            .await;
    }

    /// One complete listing into the index (what the observer does at start-up).
    async fn list(&self) {
        let started = Instant::now();
        let entries = list_node_groups(&self.eci, "test", "vk", None)
            .await
            .expect("listing");
        self.index.replace_all(entries, started);
    }

    async fn groups(&self) -> Vec<vnode_eci::model::ContainerGroup> {
        self.eci
            .describe_all_container_groups(&DescribeContainerGroupsRequest::default())
            .await
            .expect("listing")
            .into_iter()
            .filter(|g| !g.status.is_terminal())
            .collect()
    }

    fn pod(&self, name: &str) -> Option<Value> {
        self.fake
            .get(&format!("/api/v1/namespaces/default/pods/{name}"))
    }

    /// Reasons of the events written so far (after the queued ones are written).
    async fn reasons(&self) -> Vec<String> {
        self.ctl.events.flushed().await;
        self.fake
            .values_under(NS_EVENTS)
            .iter()
            .filter_map(|e| e["reason"].as_str().map(String::from))
            .collect()
    }

    fn state(&self, name: &str) -> Option<PodState> {
        self.ctl
            .records
            .lock()
            .get(&format!("default/{name}"))
            .map(|r| r.state)
    }
}

fn tag<'a>(g: &'a vnode_eci::model::ContainerGroup, key: &str) -> Option<&'a str> {
    g.tags
        .iter()
        .find(|t| t.key == key)
        .map(|t| t.value.as_str())
}

#[tokio::test]
async fn creates_a_tagged_group_annotates_the_pod_and_records_it() {
    let mut f = fixture(Profile::instant()).await;
    f.list().await;
    f.apply(&pod_json("nginx", "uid-create"));
    f.work("nginx").await;
    assert_eq!(f.state("nginx"), Some(PodState::Running));
    let groups = f.groups().await;
    assert_eq!(groups.len(), 1, "{groups:?}");
    let g = &groups[0];
    assert_eq!(tag(g, groups::tags::POD_UID), Some("uid-create"));
    assert_eq!(tag(g, groups::tags::CLUSTER), Some("test"));
    assert_eq!(tag(g, groups::tags::NODE), Some("vk"));
    assert_eq!(tag(g, groups::tags::NAMESPACE), Some("default"));
    assert_eq!(tag(g, groups::tags::POD_NAME), Some("nginx"));
    assert_eq!(g.zone_id, "cn-hangzhou-h", "zone-spread's first zone");
    let pod = f.pod("nginx").expect("pod");
    let ann = &pod["metadata"]["annotations"];
    assert_eq!(
        ann[groups::annotations::GROUP_ID],
        g.container_group_id.as_str()
    );
    assert_eq!(ann[groups::annotations::ZONE], "cn-hangzhou-h");
    assert!(
        ann[groups::annotations::PLACEMENT]
            .as_str()
            .is_some_and(|p| p.starts_with("zone-spread@")),
        "{ann}"
    );
    assert!(
        ann[groups::annotations::TRANSLATOR]
            .as_str()
            .is_some_and(|p| p.starts_with("translator-default@")),
        "{ann}"
    );
    assert!(ann[groups::annotations::SPEC].is_string(), "{ann}");
    let reasons = f.reasons().await;
    assert!(reasons.contains(&"Placed".to_string()), "{reasons:?}");
    assert!(reasons.contains(&"Created".to_string()), "{reasons:?}");
    assert_eq!(
        f.index.get("uid-create").map(|e| e.id),
        Some(g.container_group_id.clone())
    );
    let metrics = f.metrics.encode();
    assert!(
        metrics.contains("vnode_plugin_decisions_total{kind=\"placement\",plugin=\"zone-spread@"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "vnode_eci_pod_calls_total{action=\"CreateContainerGroup\",outcome=\"ok\"} 1"
        ),
        "{metrics}"
    );
    // Working the pod again (an update event) changes nothing.
    f.sync("nginx");
    f.work("nginx").await;
    assert_eq!(f.groups().await.len(), 1);
}

#[tokio::test]
async fn a_group_that_already_exists_is_adopted_not_created_again() {
    let mut f = fixture(Profile::instant()).await;
    // A group made by an earlier run (different token, same pod tags).
    let existing = f
        .eci
        .create_container_group(&CreateContainerGroupRequest {
            container_group_name: "earlier".into(),
            containers: vec![Container {
                name: "nginx".into(),
                image: "nginx".into(),
                ..Default::default()
            }],
            security_group_id: Some("sg-test".into()),
            vswitch_ids: vec!["vsw-i".into()],
            tags: vec![
                Tag::new(groups::tags::CLUSTER, "test"),
                Tag::new(groups::tags::NODE, "vk"),
                Tag::new(groups::tags::NAMESPACE, "default"),
                Tag::new(groups::tags::POD_NAME, "nginx"),
                Tag::new(groups::tags::POD_UID, "uid-adopt"),
            ],
            client_token: Some("earlier-run".into()),
            ..Default::default()
        })
        .await
        .expect("create")
        .container_group_id;
    f.list().await;
    f.apply(&pod_json("nginx", "uid-adopt"));
    f.work("nginx").await;
    assert_eq!(f.state("nginx"), Some(PodState::Running));
    let groups = f.groups().await;
    assert_eq!(groups.len(), 1, "no second create: {groups:?}");
    let pod = f.pod("nginx").expect("pod");
    assert_eq!(
        pod["metadata"]["annotations"][groups::annotations::GROUP_ID],
        existing.as_str()
    );
    assert!(!f.reasons().await.contains(&"Created".to_string()));
}

#[tokio::test]
async fn a_lost_create_answer_is_adopted_through_the_client_token() {
    let mut f = fixture(Profile::instant()).await;
    f.list().await;
    f.apply(&pod_json("nginx", "uid-lost"));
    f.work("nginx").await;
    let first = f.groups().await;
    assert_eq!(first.len(), 1);
    // Forget everything (as if the answer was lost and the daemon restarted before any
    // listing saw the group), but keep the listing flag: the create path must still not
    // make a second group.
    f.index.remove("uid-lost", &first[0].container_group_id);
    f.ctl.records.lock().clear();
    f.fake.put(
        "/api/v1/namespaces/default/pods/nginx",
        pod_json("nginx", "uid-lost"),
    );
    f.sync("nginx");
    f.work("nginx").await;
    assert_eq!(f.state("nginx"), Some(PodState::Running));
    assert_eq!(
        f.groups().await.len(),
        1,
        "the ClientToken kept it to one group"
    );
}

#[tokio::test]
async fn no_stock_in_the_first_zone_falls_back_to_the_second_attempt() {
    let mut profile = Profile::instant();
    profile.stock.out_of_stock_zones = vec!["cn-hangzhou-h".into()];
    let mut f = fixture(profile).await;
    f.list().await;
    f.apply(&pod_json("nginx", "uid-stock"));
    f.work("nginx").await;
    assert_eq!(f.state("nginx"), Some(PodState::Running));
    let groups = f.groups().await;
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].zone_id, "cn-hangzhou-i");
    let pod = f.pod("nginx").expect("pod");
    assert_eq!(
        pod["metadata"]["annotations"][groups::annotations::ZONE],
        "cn-hangzhou-i"
    );
    assert!(f.metrics.encode().contains(
        "vnode_eci_pod_calls_total{action=\"CreateContainerGroup\",outcome=\"no_stock\"}"
    ));
}

#[tokio::test]
async fn no_stock_anywhere_retries_with_backoff_and_one_event() {
    let mut profile = Profile::instant();
    profile.stock.out_of_stock_zones = vec!["cn-hangzhou-h".into(), "cn-hangzhou-i".into()];
    let mut f = fixture(profile).await;
    f.list().await;
    f.apply(&pod_json("nginx", "uid-nostock"));
    f.work("nginx").await;
    assert_eq!(
        f.state("nginx"),
        Some(PodState::Placing),
        "placement again next"
    );
    f.work("nginx").await;
    assert!(f.groups().await.is_empty());
    let no_stock = f.reasons().await.iter().filter(|r| *r == "NoStock").count();
    assert_eq!(no_stock, 1, "one event per distinct reason");
    let rec = f.ctl.records.lock()["default/nginx"].clone();
    assert!(rec.attempts >= 2, "backoff grows: {}", rec.attempts);
}

#[tokio::test]
async fn a_refused_pod_with_restart_policy_never_is_failed_with_the_reason() {
    let mut f = fixture(Profile::instant()).await;
    f.list().await;
    let mut never = pod_json("job", "uid-never");
    never["spec"]["restartPolicy"] = json!("Never");
    never["metadata"]["annotations"] = json!({"k8s.aliyun.com/eci-use-specs": "bogus"});
    f.apply(&never);
    f.work("job").await;
    let pod = f.pod("job").expect("pod");
    assert_eq!(pod["status"]["phase"], "Failed", "{pod}");
    assert_eq!(pod["status"]["reason"], "PlacementRefused");
    assert!(
        pod["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("zone-spread@")),
        "{pod}"
    );
    assert!(f.groups().await.is_empty());
    // restartPolicy Always: stays Pending with the event.
    let mut always = pod_json("web", "uid-always");
    always["metadata"]["annotations"] = json!({"k8s.aliyun.com/eci-use-specs": "bogus"});
    f.apply(&always);
    f.work("web").await;
    let pod = f.pod("web").expect("pod");
    assert!(pod["status"]["phase"].is_null(), "{pod}");
    assert_eq!(f.state("web"), Some(PodState::Pending));
    assert!(f.reasons().await.contains(&"PlacementRefused".to_string()));
}

#[tokio::test]
async fn a_missing_mandatory_secret_blocks_an_optional_one_does_not() {
    let mut f = fixture(Profile::instant()).await;
    f.list().await;
    let mut mandatory = pod_json("mandatory", "uid-mandatory");
    mandatory["spec"]["containers"][0]["env"] = json!([{
        "name": "PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "nope", "key": "password"}}
    }]);
    mandatory["spec"]["restartPolicy"] = json!("Never");
    f.apply(&mandatory);
    f.work("mandatory").await;
    assert!(f.groups().await.is_empty(), "no create without the Secret");
    assert!(
        f.reasons()
            .await
            .contains(&"MandatorySecretNotFound".to_string())
    );
    assert_eq!(f.state("mandatory"), Some(PodState::Pending));
    assert!(
        f.pod("mandatory").expect("pod")["status"]["phase"].is_null(),
        "waiting is not failing, even with restartPolicy Never"
    );

    let mut optional = pod_json("optional", "uid-optional");
    optional["spec"]["containers"][0]["env"] = json!([{
        "name": "PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "nope", "key": "password", "optional": true}}
    }]);
    f.apply(&optional);
    f.work("optional").await;
    assert_eq!(f.state("optional"), Some(PodState::Running));
    assert_eq!(f.groups().await.len(), 1);
    assert!(
        f.reasons()
            .await
            .contains(&"OptionalSecretNotFound".to_string())
    );

    // The Secret appears: the mandatory pod runs on its next check.
    f.fake.put(
        "/api/v1/namespaces/default/secrets/nope",
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "nope", "namespace": "default"},
               "data": {"password": "aHVudGVyMg=="}}),
    );
    f.work("mandatory").await;
    assert_eq!(f.state("mandatory"), Some(PodState::Running));
    assert_eq!(f.groups().await.len(), 2);
}

#[tokio::test]
async fn deletion_deletes_the_group_then_the_pod() {
    let mut f = fixture(Profile::instant()).await;
    f.list().await;
    f.apply(&pod_json("nginx", "uid-delete"));
    f.work("nginx").await;
    assert_eq!(f.groups().await.len(), 1);
    let mut deleting = f.pod("nginx").expect("pod");
    deleting["metadata"]["deletionTimestamp"] = json!("2026-11-25T18:05:00Z");
    f.apply(&deleting);
    f.work("nginx").await;
    assert!(f.groups().await.is_empty(), "group deleted");
    assert!(f.pod("nginx").is_none(), "pod deletion finished");
    assert!(f.index.get("uid-delete").is_none());
}

#[tokio::test]
async fn a_force_deleted_pod_has_its_group_deleted_right_away() {
    let mut f = fixture(Profile::instant()).await;
    f.list().await;
    f.apply(&pod_json("nginx", "uid-force"));
    f.work("nginx").await;
    assert_eq!(f.groups().await.len(), 1);
    let pod: Pod = serde_json::from_value(f.pod("nginx").expect("pod")).expect("pod");
    f.fake.remove("/api/v1/namespaces/default/pods/nginx");
    f.writer.apply_watcher_event(&watcher::Event::Delete(pod));
    f.work("nginx").await;
    assert!(f.groups().await.is_empty(), "group deleted");
    assert!(f.index.get("uid-force").is_none());
    assert!(f.state("nginx").is_none(), "record dropped");
}

#[tokio::test]
async fn nothing_is_created_before_a_complete_listing() {
    let mut f = fixture(Profile::instant()).await;
    f.apply(&pod_json("nginx", "uid-wait"));
    let work = {
        let ctl = f.ctl.clone();
        let (queue, token) = (f.queue.clone(), f.token.clone());
        tokio::spawn(async move { ctl.work("default/nginx", &queue, &token).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(f.groups().await.is_empty());
    assert!(!work.is_finished(), "waiting for the listing");
    f.index.replace_all(Vec::new(), Instant::now());
    tokio::time::timeout(std::time::Duration::from_secs(30), work)
        .await
        .expect("done after the listing")
        .expect("joined");
    assert_eq!(f.groups().await.len(), 1);
}

#[tokio::test]
async fn pods_of_one_service_account_share_a_token_request() {
    let mut f = fixture(Profile::instant()).await;
    f.fake.set_handler(|req| {
        req.path
            .ends_with("/serviceaccounts/default/token")
            .then(|| {
                (
                    201,
                    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                       "spec": {"audiences": []},
                       "status": {"token": "t-1", "expirationTimestamp": "2026-11-25T19:00:00Z"}}),
                )
            })
    });
    f.list().await;
    for (name, uid) in [("a", "uid-tok-a"), ("b", "uid-tok-b")] {
        let mut p = pod_json(name, uid);
        p["spec"]["volumes"] = json!([{"name": "token", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}
        ]}}]);
        f.apply(&p);
        f.work(name).await;
        assert_eq!(f.state(name), Some(PodState::Running), "{name}");
    }
    assert_eq!(f.groups().await.len(), 2);
    assert_eq!(
        f.fake.count(
            &http::Method::POST,
            "/api/v1/namespaces/default/serviceaccounts/default/token"
        ),
        1,
        "one TokenRequest for both pods"
    );
}
