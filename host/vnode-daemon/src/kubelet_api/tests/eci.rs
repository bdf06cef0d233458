//! [`EciPodBackend`] behind the real kubelet API (TLS, auth) against the in-process ECI
//! emulator over real HTTP: container groups created with the production client, the pod
//! store and the group index filled by hand (what the pod controller and observer do).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use kube::runtime::watcher;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use vnode_eci::model::{
    Container, CreateContainerGroupRequest, DescribeContainerGroupsRequest, RestartPolicy,
};
use vnode_eci::{Credentials, EciClient, EciClientConfig, RateLimits};
use vnode_eci_emulator::{Behaviour, EmulatorConfig, Profile, WorkloadRule};

use super::*;
use crate::groups::{GroupEntry, GroupIndex, annotations};
use crate::kubelet_api::{EciBackendOptions, EciPodBackend};
use crate::pods::store::{PodStoreWriter, pod_store};

struct Fixture {
    _dir: tempfile::TempDir,
    pki: Pki,
    base: String,
    port: u16,
    eci: Arc<EciClient>,
    index: Arc<GroupIndex>,
    writer: PodStoreWriter,
    backend: EciPodBackend,
    token: CancellationToken,
    _emulator_stop: tokio::sync::oneshot::Sender<()>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

fn profile() -> Profile {
    let mut p = Profile::instant();
    p.workloads = vec![
        WorkloadRule {
            image: "logger".into(),
            command_contains: String::new(),
            behaviour: Behaviour {
                log_lines: vec!["start".into()],
                log_every_ms: Some(40),
                log_template: "line {n}".into(),
                ..Behaviour::default()
            },
        },
        WorkloadRule {
            image: "short".into(),
            command_contains: String::new(),
            behaviour: Behaviour {
                exit_after_ms: Some(1500),
                log_lines: vec!["hello".into()],
                log_every_ms: Some(100),
                log_template: "tick {n}".into(),
                ..Behaviour::default()
            },
        },
    ];
    p
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki(dir.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = EmulatorConfig {
        profile: profile(),
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
            ..EciClientConfig::new("cn-hangzhou", Credentials::new(ak, sk))
        })
        .expect("client"),
    );
    let (store, writer) = pod_store();
    let index = Arc::new(GroupIndex::new());
    let backend = EciPodBackend::new(
        store,
        index.clone(),
        eci.clone(),
        "vk".into(),
        EciBackendOptions {
            log_poll_interval: Duration::from_millis(100),
            max_log_followers: 2,
            stats_min_ttl: Duration::from_millis(200),
            ..EciBackendOptions::default()
        },
    );
    let (base, token, _task, _metrics) = start(&pki, false, backend.clone()).await;
    let port = base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    Fixture {
        _dir: dir,
        pki,
        base,
        port,
        eci,
        index,
        writer,
        backend,
        token,
        _emulator_stop: stop_tx,
    }
}

fn pod_object(name: &str, uid: &str, group_annotation: Option<&str>) -> Pod {
    let mut annotations = serde_json::Map::new();
    if let Some(g) = group_annotation {
        annotations.insert(annotations::GROUP_ID.into(), g.into());
    }
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default", "uid": uid, "annotations": annotations},
        "spec": {"nodeName": "vk", "containers": [{"name": "app", "image": "x"}]},
        "status": {"phase": "Running"}
    }))
    .expect("pod")
}

impl Fixture {
    async fn group(&self, name: &str, image: &str) -> String {
        let id = self
            .eci
            .create_container_group(&CreateContainerGroupRequest {
                container_group_name: name.into(),
                restart_policy: Some(RestartPolicy::Never),
                containers: vec![Container {
                    name: "app".into(),
                    image: image.into(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .await
            .expect("create")
            .container_group_id;
        for _ in 0..200 {
            let groups = self
                .eci
                .describe_container_groups(&DescribeContainerGroupsRequest {
                    container_group_ids: vec![id.clone()],
                    ..Default::default()
                })
                .await
                .expect("describe");
            if groups
                .container_groups
                .first()
                .is_some_and(|g| g.status.as_str() == "Running")
            {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("group {id} never ran");
    }

    /// A pod in the store; its group recorded in the index (`indexed`) or only in the
    /// pod's annotation.
    fn pod(&mut self, name: &str, uid: &str, group: Option<&str>, indexed: bool) {
        let annotation = if indexed { None } else { group };
        self.writer
            .apply_watcher_event(&watcher::Event::Apply(pod_object(name, uid, annotation)));
        if let (Some(id), true) = (group, indexed) {
            self.index.insert(GroupEntry {
                id: id.into(),
                name: name.into(),
                pod_uid: uid.into(),
                pod_key: format!("default/{name}"),
                zone: None,
                status: Some("Running".into()),
            });
        }
    }

    fn client(&self) -> reqwest::Client {
        http_client(&self.pki.ca_pem, Some(&self.pki.client_identity_pem))
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .client()
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("send");
        (r.status().as_u16(), r.text().await.expect("text"))
    }

    async fn exec_socket(
        &self,
        path: &str,
    ) -> tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>
    {
        crate::testing::install_crypto();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(self.pki.ca_pem.as_bytes()) {
            roots.add(c.expect("pem")).expect("root");
        }
        let pem = self.pki.client_identity_pem.as_bytes();
        let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .expect("certs");
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(pem).expect("key");
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .expect("client auth");
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect");
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(
                rustls_pki_types::ServerName::try_from("localhost").expect("name"),
                tcp,
            )
            .await
            .expect("tls");
        let mut req = format!("wss://localhost:{}{path}", self.port)
            .into_client_request()
            .expect("request");
        req.headers_mut().insert(
            "sec-websocket-protocol",
            http::HeaderValue::from_static("v5.channel.k8s.io, v4.channel.k8s.io"),
        );
        let (ws, resp) = tokio_tungstenite::client_async(req, tls)
            .await
            .expect("upgrade");
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some("v5.channel.k8s.io")
        );
        ws
    }
}

/// Reads channel frames until the socket closes: (stdout, stderr, status JSON).
async fn drain<S>(ws: &mut S) -> (String, String, serde_json::Value)
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let (mut out, mut err, mut status) = (String::new(), String::new(), serde_json::Value::Null);
    let read = async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Binary(b) = msg
                && let Some((ch, rest)) = b.split_first()
            {
                match ch {
                    1 => out.push_str(&String::from_utf8_lossy(rest)),
                    2 => err.push_str(&String::from_utf8_lossy(rest)),
                    3 => status = serde_json::from_slice(rest).expect("status json"),
                    _ => {}
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("exec session ends");
    (out, err, status)
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

/// "line N" → N.
fn seq(line: &str) -> u64 {
    line.rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a numbered line: {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_apply_every_option_exactly() {
    let mut f = fixture().await;
    let group = f.group("web", "logger").await;
    f.pod("web", "uid-web", Some(&group), true);
    // More than a second of log, so that sinceSeconds=1 leaves the start out.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let (code, all) = f.get("/containerLogs/default/web/app").await;
    assert_eq!(code, 200, "{all}");
    let all = lines(&all);
    assert_eq!(all[0], "start");
    assert!(all.len() > 8, "{all:?}");
    for (i, l) in all[1..].iter().enumerate() {
        assert_eq!(seq(l), i as u64 + 1, "consecutive lines: {all:?}");
    }

    // timestamps: every line is `<RFC 3339> text`, times non-decreasing.
    let (_, stamped) = f
        .get("/containerLogs/default/web/app?timestamps=true")
        .await;
    let stamped: Vec<(jiff::Timestamp, String)> = stamped
        .lines()
        .map(|l| {
            let (ts, text) = l.split_once(' ').expect("timestamp prefix");
            (ts.parse().expect("RFC 3339"), text.to_string())
        })
        .collect();
    assert!(stamped.windows(2).all(|w| w[0].0 <= w[1].0));
    assert_eq!(stamped[0].1, "start");

    // tailLines: the last N lines, consecutive, not older than what we saw.
    let (_, tail) = f.get("/containerLogs/default/web/app?tailLines=3").await;
    let tail = lines(&tail);
    assert_eq!(tail.len(), 3, "{tail:?}");
    assert!(seq(tail[2]) >= seq(all[all.len() - 1]), "{tail:?} {all:?}");
    assert_eq!(seq(tail[1]), seq(tail[0]) + 1);
    assert_eq!(seq(tail[2]), seq(tail[1]) + 1);

    // sinceTime: exactly from the chosen line (to the nanosecond, not ECI's whole second).
    let (t5, text5) = &stamped[5];
    let (_, since) = f
        .get(&format!(
            "/containerLogs/default/web/app?sinceTime={}",
            t5.to_string().replace(':', "%3A")
        ))
        .await;
    assert_eq!(lines(&since)[0], text5, "{since}");

    // sinceSeconds: only recent lines (newer than the whole log's start).
    let (_, recent) = f.get("/containerLogs/default/web/app?sinceSeconds=1").await;
    let recent = lines(&recent);
    assert!(
        !recent.is_empty() && !recent.contains(&"start"),
        "{recent:?}"
    );

    // limitBytes: exactly that many bytes, counted after timestamps are added.
    let (_, limited) = f
        .get("/containerLogs/default/web/app?limitBytes=10&timestamps=true")
        .await;
    assert_eq!(limited.len(), 10, "{limited:?}");
    let (_, limited) = f.get("/containerLogs/default/web/app?limitBytes=7").await;
    assert_eq!(limited, "start\nl");

    // previous: the emulator's container never restarted, so there is nothing.
    let (code, prev) = f.get("/containerLogs/default/web/app?previous=true").await;
    assert_eq!((code, prev.as_str()), (200, ""));

    // The annotation alone is enough to find the group (index not filled yet).
    f.pod("annotated", "uid-annotated", Some(&group), false);
    let (code, text) = f
        .get("/containerLogs/default/annotated/app?tailLines=1")
        .await;
    assert_eq!((code, lines(&text).len()), (200, 1), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_errors_are_clear() {
    let mut f = fixture().await;
    f.pod("pending", "uid-pending", None, false);
    let (code, text) = f.get("/containerLogs/default/nope/app").await;
    assert_eq!(code, 404, "{text}");
    assert!(text.contains("default/nope"), "{text}");
    let (code, text) = f.get("/containerLogs/default/pending/other").await;
    assert_eq!(code, 404, "{text}");
    assert!(text.contains("\"other\" is not valid"), "{text}");
    // No group yet: an immediate 400 that says so, never an empty 200 that hangs.
    let (code, text) = tokio::time::timeout(
        Duration::from_secs(5),
        f.get("/containerLogs/default/pending/app?follow=true"),
    )
    .await
    .expect("answers at once");
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("waiting to start"), "{text}");
    // A group ECI does not know: 404.
    f.pod("ghost", "uid-ghost", Some("eci-doesnotexist0000000"), true);
    let (code, text) = f.get("/containerLogs/default/ghost/app").await;
    assert_eq!(code, 404, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_yields_each_new_line_once_and_stops_when_the_client_leaves() {
    let mut f = fixture().await;
    let group = f.group("web", "logger").await;
    f.pod("web", "uid-web", Some(&group), true);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let resp = f
        .client()
        .get(format!(
            "{}/containerLogs/default/web/app?follow=true&tailLines=2",
            f.base
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let read = async {
        while let Some(chunk) = body.next().await {
            text.push_str(std::str::from_utf8(&chunk.expect("chunk")).expect("utf-8"));
            if text.lines().count() >= 40 {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("40 lines arrive while following");
    let got = lines(&text);
    // Two tail lines then many polls' worth, each line exactly once, none skipped.
    for w in got.windows(2) {
        assert_eq!(seq(w[1]), seq(w[0]) + 1, "{got:?}");
    }
    assert_eq!(f.backend_followers_in_use(), 1);
    drop(body);
    // The client left: the follow state (and its permit) is dropped, so polling stopped.
    let mut released = false;
    for _ in 0..100 {
        if f.backend_followers_in_use() == 0 {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        released,
        "the follow stream kept running after the client left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ends_when_the_container_ends_or_the_pod_goes_away() {
    let mut f = fixture().await;
    let short = f.group("short", "short").await;
    f.pod("short", "uid-short", Some(&short), true);
    let follow = f
        .client()
        .get(format!(
            "{}/containerLogs/default/short/app?follow=true",
            f.base
        ))
        .send()
        .await
        .expect("send");
    // What the observer does when ECI reports the group finished.
    let index = f.index.clone();
    let short_id = short.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1800)).await;
        index.set_status("uid-short", &short_id, "Succeeded");
    });
    let text = tokio::time::timeout(Duration::from_secs(10), follow.text())
        .await
        .expect("the stream ends with the container")
        .expect("body");
    let got = lines(&text);
    assert_eq!(got[0], "hello");
    // The container logged a tick every 100 ms for 1.5 s: all of them, once, in order.
    let ticks: Vec<u64> = got[1..].iter().map(|l| seq(l)).collect();
    assert_eq!(ticks, (1..=ticks.len() as u64).collect::<Vec<_>>());
    assert!(ticks.len() >= 13, "{got:?}");

    let web = f.group("web", "logger").await;
    f.pod("web", "uid-web", Some(&web), true);
    let follow = f
        .client()
        .get(format!(
            "{}/containerLogs/default/web/app?follow=true",
            f.base
        ))
        .send()
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(400)).await;
    f.writer
        .apply_watcher_event(&watcher::Event::Delete(pod_object("web", "uid-web", None)));
    tokio::time::timeout(Duration::from_secs(10), follow.text())
        .await
        .expect("the stream ends when the pod is gone")
        .expect("body");
}

impl Fixture {
    fn backend_followers_in_use(&self) -> usize {
        2 - self.backend.followers_available()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_round_trips_stdin_stdout_and_the_exit_code() {
    let mut f = fixture().await;
    let group = f.group("web", "logger").await;
    f.pod("web", "uid-web", Some(&group), true);

    let mut ws = f
        .exec_socket("/exec/default/web/app?command=echo&command=hi&stdout=true&stderr=true")
        .await;
    let (out, err, status) = drain(&mut ws).await;
    assert_eq!((out.as_str(), err.as_str()), ("hi\n", ""));
    assert_eq!(status["status"], "Success");

    // Interactive: stdin lines in, output out, the exit code in the final Status.
    let mut ws = f
        .exec_socket("/exec/default/web/uid-web/app?command=sh&stdin=true&stdout=true&stderr=true")
        .await;
    ws.send(Message::binary(b"\x00echo hello\n".to_vec()))
        .await
        .expect("stdin");
    ws.send(Message::binary(b"\x00nosuchcmd\n".to_vec()))
        .await
        .expect("stdin");
    ws.send(Message::binary(b"\x00exit 3\n".to_vec()))
        .await
        .expect("stdin");
    let (out, err, status) = drain(&mut ws).await;
    assert_eq!(out, "hello\n");
    assert!(err.contains("nosuchcmd: not found"), "{err}");
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(status["details"]["causes"][0]["message"], "3");

    // A wrong UID, an unknown container: refused before the upgrade.
    let c = f.client();
    let r = c
        .get(format!(
            "{}/exec/default/web/other-uid/app?command=ls&stdout=true",
            f.base
        ))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_come_from_eci_metrics_and_a_failed_group_is_left_out() {
    let mut f = fixture().await;
    let group = f.group("web", "logger").await;
    f.pod("web", "uid-web", Some(&group), true);
    f.pod("ghost", "uid-ghost", Some("eci-doesnotexist0000000"), true);
    f.pod("pending", "uid-pending", None, false);

    // The emulator samples at 15 s boundaries: poll until the first sample is there (the
    // fixture's metric cache TTL is short).
    let mut summary = serde_json::Value::Null;
    for _ in 0..80 {
        let (code, text) = f.get("/stats/summary").await;
        assert_eq!(code, 200, "{text}");
        summary = serde_json::from_str(&text).expect("json");
        if summary["pods"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["cpu"].is_object()))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(summary["node"]["nodeName"], "vk");
    let pods = summary["pods"].as_array().expect("pods");
    assert_eq!(
        pods.len(),
        1,
        "only the pod whose metrics came back: {summary}"
    );
    let web = &pods[0];
    assert_eq!(web["podRef"]["name"], "web");
    assert_eq!(web["podRef"]["namespace"], "default");
    assert_eq!(web["podRef"]["uid"], "uid-web");
    assert_eq!(web["containers"][0]["name"], "app");
    let ns = web["cpu"]["usageNanoCores"].as_u64().expect("nanocores");
    assert!(ns > 0);
    assert!(web["containers"][0]["cpu"]["usageCoreNanoSeconds"].is_u64());
    assert!(web["containers"][0]["memory"]["workingSetBytes"].as_u64() > Some(0));
    // Node totals are the sum of the pods.
    assert_eq!(summary["node"]["cpu"]["usageNanoCores"].as_u64(), Some(ns));
    assert_eq!(
        summary["node"]["memory"]["workingSetBytes"],
        web["memory"]["workingSetBytes"]
    );
    // The Go side parses these times as RFC 3339.
    let _: jiff::Timestamp = web["cpu"]["time"]
        .as_str()
        .expect("time")
        .parse()
        .expect("RFC 3339");

    let (code, text) = f.get("/metrics/resource").await;
    assert_eq!(code, 200);
    assert!(
        text.contains("pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"web\"}"),
        "{text}"
    );
    assert!(
        text.contains(
            "container_memory_working_set_bytes{container=\"app\",namespace=\"default\",pod=\"web\"}"
        ),
        "{text}"
    );
    assert!(text.contains("node_cpu_usage_seconds_total "), "{text}");
    assert!(!text.contains("ghost"), "{text}");

    // /pods: everything in the store; /runningpods/: only pods with a group.
    let (_, pods) = f.get("/pods").await;
    let pods: serde_json::Value = serde_json::from_str(&pods).expect("json");
    assert_eq!(pods["items"].as_array().map(Vec::len), Some(3));
    let (_, running) = f.get("/runningpods/").await;
    let running: serde_json::Value = serde_json::from_str(&running).expect("json");
    let mut names: Vec<&str> = running["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["ghost", "web"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eci_backend_is_still_behind_authentication() {
    let f = fixture().await;
    let anon = http_client(&f.pki.ca_pem, None);
    let r = anon
        .get(format!("{}/pods", f.base))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let r = anon
        .get(format!("{}/pods", f.base))
        .bearer_auth("good")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let (code, _) = f.get("/stats/summary").await;
    assert_eq!(code, 200);
}
