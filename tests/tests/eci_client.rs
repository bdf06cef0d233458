//! The production ECI client against the in-process ECI emulator over real HTTP on
//! loopback: every action, paging and tag filters, idempotent retry after an injected
//! timeout, throttling back-off, every error class, lifecycle semantics, state file.

use std::time::{Duration, Instant};

use vnode_eci::model::*;
use vnode_eci::{
    Credentials, EciClient, EciClientConfig, EciError, RateLimits, RetryPolicy, SignatureVersion,
};
use vnode_eci_emulator::{EmulatorConfig, Profile, Timing};

/// An emulator served in-process on 127.0.0.1:0; stopped on drop.
struct Emu {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), vnode_eci_emulator::EmulatorError>>>,
    ak: String,
    sk: String,
}

impl Emu {
    async fn start(config: EmulatorConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let (ak, sk) = (
            config.access_key_id.clone(),
            config.access_key_secret.clone(),
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(vnode_eci_emulator::serve(listener, config, async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            stop: Some(tx),
            task: Some(task),
            ak,
            sk,
        }
    }

    /// An emulator with every setting at its default except the profile.
    async fn with_profile(profile: Profile) -> Self {
        Self::start(EmulatorConfig {
            profile,
            ..EmulatorConfig::default()
        })
        .await
    }

    fn client_with(&self, f: impl FnOnce(EciClientConfig) -> EciClientConfig) -> EciClient {
        let base = EciClientConfig {
            endpoint: Some(format!("http://{}", self.addr)),
            retry: RetryPolicy {
                initial_backoff: Duration::from_millis(20),
                ..RetryPolicy::default()
            },
            ..EciClientConfig::new(
                "cn-hangzhou",
                Credentials::new(self.ak.clone(), self.sk.clone()),
            )
        };
        EciClient::new(f(base)).expect("client config is valid")
    }

    fn client(&self) -> EciClient {
        self.client_with(|c| c)
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("emulator task")
                .expect("emulator stopped cleanly");
        }
    }
}

impl Drop for Emu {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// How long a test waits for a group to reach a status: far longer than any timing below,
/// for a loaded machine.
const STATUS_TIMEOUT: Duration = Duration::from_secs(30);

/// Short lifecycle timings. The passing states a test checks right after the call that
/// enters them (Scheduling, Updating, Restarting, Terminating) last 1.5 s, so that a
/// loaded machine's pause between the call and the check does not skip them.
fn fast_profile() -> Profile {
    Profile {
        timing: Timing {
            scheduling_ms: 1500,
            pulling_ms: 100,
            init_container_ms: 50,
            restart_backoff_ms: 200,
            restarting_ms: 1500,
            updating_ms: 1500,
            terminating_ms: 1500,
            instant: false,
        },
        ..Profile::default()
    }
}

fn fast_config() -> EmulatorConfig {
    EmulatorConfig {
        profile: fast_profile(),
        ..EmulatorConfig::default()
    }
}

fn nginx(name: &str) -> CreateContainerGroupRequest {
    CreateContainerGroupRequest {
        container_group_name: name.into(),
        containers: vec![Container {
            name: "web".into(),
            image: "nginx:1.25".into(),
            cpu: Some(0.5),
            memory: Some(1.0),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn job(name: &str, script: &str, policy: RestartPolicy) -> CreateContainerGroupRequest {
    CreateContainerGroupRequest {
        container_group_name: name.into(),
        restart_policy: Some(policy),
        containers: vec![Container {
            name: "job".into(),
            image: "busybox:1.36".into(),
            command: vec!["sh".into(), "-c".into()],
            args: vec![script.into()],
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn describe_one(client: &EciClient, id: &str) -> Option<ContainerGroup> {
    let resp = client
        .describe_container_groups(&DescribeContainerGroupsRequest {
            container_group_ids: vec![id.to_string()],
            ..Default::default()
        })
        .await
        .expect("describe");
    resp.container_groups.into_iter().next()
}

async fn wait_status(
    client: &EciClient,
    id: &str,
    want: ContainerGroupStatus,
    timeout: Duration,
) -> ContainerGroup {
    let deadline = Instant::now() + timeout;
    loop {
        let g = describe_one(client, id).await.expect("group exists");
        if g.status == want {
            return g;
        }
        assert!(
            Instant::now() < deadline,
            "group {id} stuck in {} waiting for {want}",
            g.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads an exec WebSocket to the end: (stdout, stderr, exit code).
async fn read_exec(url: &str, stdin: &[&str]) -> (String, String, i32) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("exec websocket connects");
    for line in stdin {
        let mut frame = vec![0u8];
        frame.extend_from_slice(line.as_bytes());
        ws.send(Message::Binary(frame.into()))
            .await
            .expect("send stdin");
    }
    let (mut out, mut err, mut code) = (String::new(), String::new(), None);
    while let Some(msg) = ws.next().await {
        match msg.expect("websocket frame") {
            Message::Binary(b) if !b.is_empty() => {
                let text = String::from_utf8_lossy(&b[1..]).to_string();
                match b[0] {
                    1 => out.push_str(&text),
                    2 => err.push_str(&text),
                    3 => code = Some(text.parse::<i32>().expect("exit code frame is a number")),
                    other => panic!("unexpected stream {other}"),
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    (out, err, code.expect("exit code frame received"))
}

async fn every_action(signature: SignatureVersion) {
    let emu = Emu::start(fast_config()).await;
    let client = emu.client_with(|c| EciClientConfig {
        signature_version: signature,
        ..c
    });
    // Base64 of "worker_processes 1;\n": ConfigFileVolume content travels Base64-encoded.
    let conf = "d29ya2VyX3Byb2Nlc3NlcyAxOwo=".to_string();
    let mut req = nginx("web-every-action");
    req.tags = vec![
        Tag::new("vnode.io/cluster", "c1"),
        Tag::new("vnode.io/pod-uid", "uid-1"),
    ];
    req.volumes = vec![Volume {
        name: "conf".into(),
        kind: Some(VolumeType::ConfigFileVolume),
        config_file_volume: Some(ConfigFileVolume {
            default_mode: Some(420),
            files: vec![ConfigFileToPath {
                path: "nginx.conf".into(),
                content: conf,
                mode: None,
            }],
        }),
        ..Default::default()
    }];
    req.containers[0].volume_mounts = vec![VolumeMount {
        name: "conf".into(),
        mount_path: "/etc/nginx".into(),
        ..Default::default()
    }];
    req.containers[0].env = vec![
        EnvVar {
            key: "GREETING".into(),
            value: Some("hello world".into()),
            field_ref: None,
        },
        EnvVar {
            key: "POD_IP".into(),
            value: None,
            field_ref: Some(FieldRef {
                field_path: "status.podIP".into(),
            }),
        },
    ];
    req.client_token = Some(vnode_eci::client_token_for_pod("uid-1", 0));
    let created = client.create_container_group(&req).await.expect("create");
    assert!(
        created.container_group_id.starts_with("eci-"),
        "{}",
        created.container_group_id
    );
    assert!(!created.request_id.is_empty());
    let id = created.container_group_id.clone();

    let g = wait_status(&client, &id, ContainerGroupStatus::Running, STATUS_TIMEOUT).await;
    assert_eq!((g.cpu, g.memory), (0.5, 1.0));
    assert_eq!(g.tags.len(), 2);
    assert_eq!(g.containers[0].current_state.state, "Running");
    assert!(g.containers[0].ready);
    assert!(
        g.events.iter().any(|e| e.reason == "Started"),
        "{:?}",
        g.events
    );
    assert!(
        g.containers[0]
            .environment_vars
            .iter()
            .any(|e| e.key == "POD_IP" && e.value == g.intranet_ip)
    );

    let status = client
        .describe_container_group_status_by_ids(std::slice::from_ref(&id), None)
        .await
        .expect("status");
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].status, ContainerGroupStatus::Running);
    let pod = status[0].pod_status.as_ref().expect("pod status");
    assert_eq!(pod.phase, "Running");
    assert_eq!(status[0].uuid, "uid-1");
    assert!(pod.container_statuses[0].state.running.is_some());

    // Logs: nginx-like images log two lines at start, 1 ms apart on the emulator's clock, and
    // then periodically. The status above can come within that first millisecond (seen on a
    // loaded machine: only the first line), so wait for the second line.
    let deadline = Instant::now() + STATUS_TIMEOUT;
    let logs = loop {
        let logs = client
            .describe_container_log(&DescribeContainerLogRequest {
                container_group_id: id.clone(),
                container_name: "web".into(),
                timestamps: Some(true),
                ..Default::default()
            })
            .await
            .expect("logs");
        if logs.content.contains("start worker processes") {
            break logs;
        }
        assert!(
            Instant::now() < deadline,
            "no \"start worker processes\" line: {:?}",
            logs.content
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let first = logs.content.lines().next().expect("a line");
    let stamp = first.split(' ').next().unwrap_or_default();
    assert!(
        vnode_eci::wire::parse_timestamp(stamp).is_some(),
        "timestamp prefix in {first:?}"
    );
    let limited = client
        .describe_container_log(&DescribeContainerLogRequest {
            container_group_id: id.clone(),
            container_name: "web".into(),
            limit_bytes: Some(5),
            ..Default::default()
        })
        .await
        .expect("logs");
    assert_eq!(limited.content.len(), 5);

    // Exec: synchronous, then the WebSocket.
    let sync = client
        .exec_container_command(&ExecContainerCommandRequest {
            container_group_id: id.clone(),
            container_name: "web".into(),
            command: vec!["printenv".into(), "GREETING".into()],
            sync: Some(true),
            ..Default::default()
        })
        .await
        .expect("exec sync");
    assert_eq!(sync.sync_response, "hello world\n");
    let exec = client
        .exec_container_command(&ExecContainerCommandRequest {
            container_group_id: id.clone(),
            container_name: "web".into(),
            command: vec![
                "sh".into(),
                "-c".into(),
                "cat /etc/nginx/nginx.conf; hostname; exit 4".into(),
            ],
            ..Default::default()
        })
        .await
        .expect("exec");
    assert!(
        exec.web_socket_uri.starts_with("ws://127.0.0.1:"),
        "{}",
        exec.web_socket_uri
    );
    let (out, _, code) = read_exec(&exec.web_socket_uri, &[]).await;
    assert_eq!(out, "worker_processes 1;\nweb-every-action\n");
    assert_eq!(code, 4);
    let shell = client
        .exec_container_command(&ExecContainerCommandRequest {
            container_group_id: id.clone(),
            container_name: "web".into(),
            command: vec!["/bin/sh".into()],
            tty: Some(false),
            stdin: Some(true),
            ..Default::default()
        })
        .await
        .expect("exec shell");
    let (out, err, code) = read_exec(
        &shell.web_socket_uri,
        &["echo one\n", "nosuchcmd\n", "exit 0\n"],
    )
    .await;
    assert_eq!(out, "one\n");
    assert!(err.contains("nosuchcmd: not found"));
    assert_eq!(code, 0);

    // Metrics and price.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let metric = client
        .describe_container_group_metric(&DescribeContainerGroupMetricRequest {
            container_group_id: id.clone(),
            period: Some("15".into()),
            ..Default::default()
        })
        .await
        .expect("metric");
    assert_eq!(metric.container_group_id, id);
    assert!(metric.records.len() <= 50);
    let price = client
        .describe_container_group_price(&DescribeContainerGroupPriceRequest {
            cpu: Some(2.0),
            memory: Some(4.0),
            spot_strategy: Some(SpotStrategy::SpotAsPriceGo),
            ..Default::default()
        })
        .await
        .expect("price");
    assert!(price.price_info.price.original_price > price.price_info.price.trade_price);
    assert!(!price.price_info.spot_prices.spot_price.is_empty());

    // Update, then restart.
    let mut new_containers = req.containers.clone();
    new_containers[0].image = "nginx:1.27".into();
    client
        .update_container_group(&UpdateContainerGroupRequest {
            container_group_id: id.clone(),
            containers: new_containers,
            ..Default::default()
        })
        .await
        .expect("update");
    assert_eq!(
        describe_one(&client, &id).await.expect("exists").status,
        ContainerGroupStatus::Updating
    );
    let g = wait_status(&client, &id, ContainerGroupStatus::Running, STATUS_TIMEOUT).await;
    assert_eq!(g.containers[0].image, "nginx:1.27");
    client
        .restart_container_group(&RestartContainerGroupRequest {
            container_group_id: id.clone(),
            client_token: None,
        })
        .await
        .expect("restart");
    assert_eq!(
        describe_one(&client, &id).await.expect("exists").status,
        ContainerGroupStatus::Restarting
    );
    let g = wait_status(&client, &id, ContainerGroupStatus::Running, STATUS_TIMEOUT).await;
    assert_eq!(g.containers[0].restart_count, 1);

    // Delete: the group disappears.
    client
        .delete_container_group(&DeleteContainerGroupRequest {
            container_group_id: id.clone(),
            ..Default::default()
        })
        .await
        .expect("delete");
    assert!(describe_one(&client, &id).await.is_none());
    emu.stop().await;
}

#[tokio::test]
async fn every_action_v3() {
    every_action(SignatureVersion::V3).await;
}

#[tokio::test]
async fn every_action_v1() {
    every_action(SignatureVersion::V1).await;
}

#[tokio::test]
async fn paging_and_tag_filters() {
    let emu = Emu::with_profile(Profile::instant()).await;
    let client = emu.client();
    for i in 0..45 {
        let mut r = nginx(&format!("page-{i}"));
        r.tags = vec![
            Tag::new("vnode.io/node", if i < 25 { "node-a" } else { "node-b" }),
            Tag::new("vnode.io/pod-uid", format!("uid-{i}")),
        ];
        client.create_container_group(&r).await.expect("create");
    }
    let by_tag = DescribeContainerGroupsRequest {
        tags: vec![Tag::new("vnode.io/node", "node-a")],
        ..Default::default()
    };
    let first = client
        .describe_container_groups(&DescribeContainerGroupsRequest {
            limit: Some(10),
            ..by_tag.clone()
        })
        .await
        .expect("page 1");
    assert_eq!(first.total_count, 25);
    assert_eq!(first.container_groups.len(), 10);
    assert!(!first.next_token.is_empty());
    let all = client
        .describe_all_container_groups(&by_tag)
        .await
        .expect("all pages");
    assert_eq!(all.len(), 25);
    let mut names: Vec<String> = all.iter().map(|g| g.container_group_name.clone()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 25, "no duplicates across pages");
    assert!(
        all.iter()
            .all(|g| g.tags.iter().any(|t| t.value == "node-a"))
    );
    let two_tags = DescribeContainerGroupsRequest {
        tags: vec![
            Tag::new("vnode.io/node", "node-b"),
            Tag::new("vnode.io/pod-uid", "uid-30"),
        ],
        ..Default::default()
    };
    let one = client
        .describe_all_container_groups(&two_tags)
        .await
        .expect("and filter");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].container_group_name, "page-30");
    // Status by tag, paged.
    let mut status_req = DescribeContainerGroupStatusRequest {
        tags: vec![Tag::new("vnode.io/node", "node-b")],
        limit: Some(7),
        ..Default::default()
    };
    let mut seen = 0;
    loop {
        let page = client
            .describe_container_group_status(&status_req)
            .await
            .expect("status page");
        seen += page.data.len();
        if page.next_token.is_empty() {
            break;
        }
        status_req.next_token = Some(page.next_token);
    }
    assert_eq!(seen, 20);
    // SinceSecond: everything just changed; nothing changed in the "future".
    let recent = client
        .describe_container_group_status(&DescribeContainerGroupStatusRequest {
            since_second: Some(60),
            limit: Some(100),
            ..Default::default()
        })
        .await
        .expect("since");
    assert_eq!(recent.total_count, 45);
    // Paging by name and status filters.
    let running = client
        .describe_all_container_groups(&DescribeContainerGroupsRequest {
            status: Some("Running".into()),
            ..Default::default()
        })
        .await
        .expect("status filter");
    assert_eq!(running.len(), 45);
    emu.stop().await;
}

#[tokio::test]
async fn idempotent_retry_after_injected_timeout() {
    let profile = Profile::from_yaml(
        "faults:\n  - actions: [CreateContainerGroup]\n    kind: timeout\n    first: 1\n    delay_ms: 1500\n",
    )
    .expect("profile");
    let emu = Emu::with_profile(profile).await;
    let client = emu.client_with(|c| EciClientConfig {
        request_timeout: Duration::from_millis(500),
        ..c
    });
    let mut req = nginx("idem-1");
    req.tags = vec![Tag::new("vnode.io/pod-uid", "uid-idem")];
    req.client_token = Some(vnode_eci::client_token_for_pod("uid-idem", 0));
    let created = client
        .create_container_group(&req)
        .await
        .expect("create succeeds on retry");
    let groups = client
        .describe_all_container_groups(&DescribeContainerGroupsRequest {
            tags: vec![Tag::new("vnode.io/pod-uid", "uid-idem")],
            ..Default::default()
        })
        .await
        .expect("describe");
    assert_eq!(
        groups.len(),
        1,
        "the timed-out attempt and the retry made one group"
    );
    assert_eq!(groups[0].container_group_id, created.container_group_id);
    // Same token again: the same group.
    let again = client.create_container_group(&req).await.expect("replay");
    assert_eq!(again.container_group_id, created.container_group_id);
    // Same token, different parameters: mismatch.
    let mut changed = req.clone();
    changed.containers[0].image = "nginx:1.27".into();
    let err = client
        .create_container_group(&changed)
        .await
        .expect_err("mismatch");
    assert!(
        matches!(err, EciError::IdempotencyMismatch { .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    emu.stop().await;
}

#[tokio::test]
async fn create_without_token_is_not_retried_after_timeout() {
    let profile = Profile::from_yaml(
        "faults:\n  - actions: [CreateContainerGroup]\n    kind: timeout\n    first: 1\n    delay_ms: 1000\n",
    )
    .expect("profile");
    let emu = Emu::with_profile(profile).await;
    let client = emu.client_with(|c| EciClientConfig {
        request_timeout: Duration::from_millis(300),
        ..c
    });
    let err = client
        .create_container_group(&nginx("no-token"))
        .await
        .expect_err("timeout surfaces");
    assert!(
        matches!(err, EciError::Transport { timeout: true, .. }),
        "{err:?}"
    );
    emu.stop().await;
}

#[tokio::test]
async fn throttling_backoff() {
    let profile = Profile::from_yaml("quotas:\n  DescribeContainerGroups: 120\n").expect("profile");
    let emu = Emu::with_profile(profile).await;
    // No client-side pacing: the emulator throttles; the client backs off and succeeds.
    let client = emu.client_with(|c| EciClientConfig {
        rate_limits: RateLimits::unlimited(),
        ..c
    });
    let started = Instant::now();
    for _ in 0..122 {
        client
            .describe_container_groups(&DescribeContainerGroupsRequest::default())
            .await
            .expect("paced by retries");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "two calls had to wait for the bucket to refill"
    );
    // Without retries, the throttling error surfaces with the server's retry hint.
    let no_retry = emu.client_with(|c| EciClientConfig {
        rate_limits: RateLimits::unlimited(),
        retry: RetryPolicy::none(),
        ..c
    });
    let err = no_retry
        .describe_container_groups(&DescribeContainerGroupsRequest::default())
        .await
        .expect_err("throttled");
    match &err {
        EciError::Throttled {
            code, retry_after, ..
        } => {
            assert_eq!(code, "Throttling.User");
            assert!(retry_after.is_some_and(|d| d > Duration::ZERO));
        }
        other => panic!("expected Throttled, got {other:?}"),
    }
    assert!(err.is_retryable());
    // Client-side pacing just under the quota is never throttled, even without retries
    // (pacing exactly at the quota can lose a race by the network latency's jitter).
    emu.stop().await;
    let profile = Profile::from_yaml("quotas:\n  DescribeContainerGroups: 600\n").expect("profile");
    let emu = Emu::with_profile(profile).await;
    let paced = emu.client_with(|c| EciClientConfig {
        rate_limits: RateLimits::documented()
            .set(vnode_eci::Action::DescribeContainerGroups, Some(590)),
        retry: RetryPolicy::none(),
        ..c
    });
    for _ in 0..605 {
        paced
            .describe_container_groups(&DescribeContainerGroupsRequest::default())
            .await
            .expect("paced, never throttled");
    }
    emu.stop().await;
}

#[tokio::test]
async fn every_error_class() {
    let profile = Profile::from_yaml(
        "stock:\n  out_of_stock_zones: [cn-hangzhou-k]\nfaults:\n  - actions: [DescribeContainerGroupPrice]\n    kind: error\n    first: 100\n",
    )
    .expect("profile");
    let emu = Emu::start(EmulatorConfig {
        profile: Profile {
            timing: Timing {
                instant: true,
                ..Timing::default()
            },
            ..profile
        },
        ..EmulatorConfig::default()
    })
    .await;
    let client = emu.client_with(|c| EciClientConfig {
        retry: RetryPolicy {
            max_retries: 1,
            initial_backoff: Duration::from_millis(5),
            ..RetryPolicy::default()
        },
        ..c
    });

    let err = client
        .delete_container_group(&DeleteContainerGroupRequest {
            container_group_id: "eci-doesnotexist".into(),
            ..Default::default()
        })
        .await
        .expect_err("unknown id");
    assert!(matches!(err, EciError::NotFound { .. }), "{err:?}");

    let mut bad = nginx("bad-image");
    bad.containers[0].image.clear();
    let err = client
        .create_container_group(&bad)
        .await
        .expect_err("missing image");
    match &err {
        EciError::InvalidParameter { code, message, .. } => {
            assert_eq!(code, "MissingParameter");
            assert!(message.contains("Container.1.Image"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    let mut sold_out = nginx("sold-out");
    sold_out.zone_id = Some("cn-hangzhou-k".into());
    match client
        .create_container_group(&sold_out)
        .await
        .expect_err("no stock")
    {
        EciError::NoStock {
            zone, spec, code, ..
        } => {
            assert_eq!(code, "OperationDenied.NoStock");
            assert_eq!(zone.as_deref(), Some("cn-hangzhou-k"));
            assert_eq!(spec.as_deref(), Some("0.5-1.0Gi"));
        }
        other => panic!("{other:?}"),
    }

    let done = client
        .create_container_group(&job(
            "done-job",
            "echo ok; sleep 0.05",
            RestartPolicy::Never,
        ))
        .await
        .expect("create");
    wait_status(
        &client,
        &done.container_group_id,
        ContainerGroupStatus::Succeeded,
        STATUS_TIMEOUT,
    )
    .await;
    let err = client
        .restart_container_group(&RestartContainerGroupRequest {
            container_group_id: done.container_group_id,
            client_token: None,
        })
        .await
        .expect_err("restart a finished job");
    assert!(
        matches!(err, EciError::Conflict { ref code, .. } if code == "IncorrectStatus"),
        "{err:?}"
    );

    let err = client
        .describe_container_group_price(&DescribeContainerGroupPriceRequest {
            cpu: Some(1.0),
            ..Default::default()
        })
        .await
        .expect_err("injected 500");
    assert!(
        matches!(err, EciError::Server { status: 500, ref code, .. } if code == "InternalError"),
        "{err:?}"
    );

    let mut dry = nginx("dry-run");
    dry.dry_run = Some(true);
    assert!(matches!(
        client.create_container_group(&dry).await,
        Err(EciError::DryRunPassed { .. })
    ));

    let wrong_secret = EciClient::new(EciClientConfig {
        endpoint: Some(format!("http://{}", emu.addr)),
        ..EciClientConfig::new(
            "cn-hangzhou",
            Credentials::new(emu.ak.clone(), "not-the-secret"),
        )
    })
    .expect("client");
    let err = wrong_secret
        .describe_container_groups(&DescribeContainerGroupsRequest::default())
        .await
        .expect_err("bad signature");
    assert!(
        matches!(err, EciError::Auth { ref code, .. } if code == "SignatureDoesNotMatch"),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("not-the-secret"));
    let unknown_key = EciClient::new(EciClientConfig {
        endpoint: Some(format!("http://{}", emu.addr)),
        signature_version: SignatureVersion::V1,
        ..EciClientConfig::new("cn-hangzhou", Credentials::new("nobody", "x"))
    })
    .expect("client");
    let err = unknown_key
        .describe_container_groups(&DescribeContainerGroupsRequest::default())
        .await
        .expect_err("unknown key");
    assert!(
        matches!(err, EciError::Auth { ref code, .. } if code == "InvalidAccessKeyId.NotFound"),
        "{err:?}"
    );

    // Transport: nothing listens on a freshly closed port.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let dead = EciClient::new(EciClientConfig {
        endpoint: Some(format!("http://{closed}")),
        retry: RetryPolicy::none(),
        ..EciClientConfig::new("cn-hangzhou", Credentials::new("a", "b"))
    })
    .expect("client");
    let err = dead
        .describe_container_groups(&DescribeContainerGroupsRequest::default())
        .await
        .expect_err("refused");
    assert!(
        matches!(err, EciError::Transport { timeout: false, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());

    // Decode: a server that answers 200 with something that is not JSON.
    let junk = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let junk_addr = junk.local_addr().expect("addr");
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = junk.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
                )
                .await;
        }
    });
    let junk_client = EciClient::new(EciClientConfig {
        endpoint: Some(format!("http://{junk_addr}")),
        ..EciClientConfig::new("cn-hangzhou", Credentials::new("a", "b"))
    })
    .expect("client");
    let err = junk_client
        .describe_container_groups(&DescribeContainerGroupsRequest::default())
        .await
        .expect_err("junk");
    assert!(matches!(err, EciError::Decode { .. }), "{err:?}");
    emu.stop().await;
}

#[tokio::test]
async fn lifecycle_semantics() {
    let profile = Profile {
        spot: vnode_eci_emulator::profile::Spot {
            reclaim_after_ms: Some(300),
        },
        ..fast_profile()
    };
    let emu = Emu::with_profile(profile).await;
    let client = emu.client();
    let ok = client
        .create_container_group(&job("job-ok", "echo done; sleep 0.2", RestartPolicy::Never))
        .await
        .expect("create");
    let failing = client
        .create_container_group(&job("job-fail", "echo oops; exit 3", RestartPolicy::Never))
        .await
        .expect("create");
    let crashing = client
        .create_container_group(&job(
            "job-crash",
            "sleep 0.1; exit 1",
            RestartPolicy::Always,
        ))
        .await
        .expect("create");
    let mut spot = nginx("spot-web");
    spot.spot_strategy = Some(SpotStrategy::SpotAsPriceGo);
    let spot = client.create_container_group(&spot).await.expect("create");
    let mut deadline = nginx("deadline-web");
    deadline.active_deadline_seconds = Some(1);
    let deadline = client
        .create_container_group(&deadline)
        .await
        .expect("create");
    let mut with_init = nginx("with-init");
    with_init.init_containers = vec![Container {
        name: "init".into(),
        image: "busybox".into(),
        command: vec!["sh".into(), "-c".into(), "echo init".into()],
        ..Default::default()
    }];
    let with_init = client
        .create_container_group(&with_init)
        .await
        .expect("create");

    // Right after creation: Scheduling.
    assert_eq!(
        describe_one(&client, &ok.container_group_id)
            .await
            .expect("exists")
            .status,
        ContainerGroupStatus::Scheduling
    );

    let g = wait_status(
        &client,
        &ok.container_group_id,
        ContainerGroupStatus::Succeeded,
        STATUS_TIMEOUT,
    )
    .await;
    assert_eq!(g.containers[0].current_state.state, "Terminated");
    assert_eq!(g.containers[0].current_state.exit_code, 0);
    assert!(!g.succeeded_time.is_empty());
    let logs = client
        .describe_container_log(&DescribeContainerLogRequest {
            container_group_id: ok.container_group_id.clone(),
            container_name: "job".into(),
            ..Default::default()
        })
        .await
        .expect("logs of a finished job");
    assert_eq!(logs.content, "done\n");

    let g = wait_status(
        &client,
        &failing.container_group_id,
        ContainerGroupStatus::Failed,
        STATUS_TIMEOUT,
    )
    .await;
    assert_eq!(g.containers[0].current_state.exit_code, 3);

    // Always: keeps restarting, stays Running, restart count grows, LastTime logs.
    let deadline_t = Instant::now() + STATUS_TIMEOUT;
    loop {
        let g = describe_one(&client, &crashing.container_group_id)
            .await
            .expect("exists");
        if g.containers.first().is_some_and(|c| c.restart_count >= 2) {
            assert_eq!(g.status, ContainerGroupStatus::Running);
            assert_eq!(g.containers[0].previous_state.exit_code, 1);
            break;
        }
        assert!(Instant::now() < deadline_t, "no restarts seen: {g:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let g = wait_status(
        &client,
        &spot.container_group_id,
        ContainerGroupStatus::Expired,
        STATUS_TIMEOUT,
    )
    .await;
    assert!(!g.expired_time.is_empty());
    let g = wait_status(
        &client,
        &deadline.container_group_id,
        ContainerGroupStatus::Failed,
        STATUS_TIMEOUT,
    )
    .await;
    assert_eq!(g.containers[0].current_state.reason, "DeadlineExceeded");
    let g = wait_status(
        &client,
        &with_init.container_group_id,
        ContainerGroupStatus::Running,
        STATUS_TIMEOUT,
    )
    .await;
    assert_eq!(g.init_containers[0].current_state.state, "Terminated");
    let init_logs = client
        .describe_container_log(&DescribeContainerLogRequest {
            container_group_id: with_init.container_group_id.clone(),
            container_name: "init".into(),
            ..Default::default()
        })
        .await
        .expect("init logs");
    assert_eq!(init_logs.content, "init\n");

    // preStop hook: Terminating, then gone.
    let mut graceful = nginx("graceful");
    graceful.containers[0].lifecycle_pre_stop_handler_exec =
        vec!["nginx".into(), "-s".into(), "quit".into()];
    let graceful = client
        .create_container_group(&graceful)
        .await
        .expect("create");
    wait_status(
        &client,
        &graceful.container_group_id,
        ContainerGroupStatus::Running,
        STATUS_TIMEOUT,
    )
    .await;
    client
        .delete_container_group(&DeleteContainerGroupRequest {
            container_group_id: graceful.container_group_id.clone(),
            ..Default::default()
        })
        .await
        .expect("delete");
    assert_eq!(
        describe_one(&client, &graceful.container_group_id)
            .await
            .expect("still there")
            .status,
        ContainerGroupStatus::Terminating
    );
    let gone_by = Instant::now() + STATUS_TIMEOUT;
    while describe_one(&client, &graceful.container_group_id)
        .await
        .is_some()
    {
        assert!(Instant::now() < gone_by, "the group outlived its preStop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    emu.stop().await;
}

#[tokio::test]
async fn async_no_stock_goes_schedule_failed() {
    let profile = Profile::from_yaml("stock:\n  out_of_stock_specs: ['2.0-4.0Gi']\n  asynchronous: true\ntiming:\n  scheduling_ms: 50\n").expect("profile");
    let emu = Emu::with_profile(profile).await;
    let client = emu.client();
    let mut r = nginx("big");
    r.containers[0].cpu = Some(2.0);
    r.containers[0].memory = Some(3.0); // rounds up to 2-4
    let created = client.create_container_group(&r).await.expect("accepted");
    let g = wait_status(
        &client,
        &created.container_group_id,
        ContainerGroupStatus::ScheduleFailed,
        STATUS_TIMEOUT,
    )
    .await;
    assert_eq!((g.cpu, g.memory), (2.0, 4.0));
    assert!(
        g.events
            .iter()
            .any(|e| e.reason == "NoStock" && e.kind == "Warning"),
        "{:?}",
        g.events
    );
    emu.stop().await;
}

#[tokio::test]
async fn state_file_survives_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("eci-state.json");
    let config = EmulatorConfig {
        state_file: Some(state.clone()),
        profile: Profile::instant(),
        ..EmulatorConfig::default()
    };
    let emu = Emu::start(config.clone()).await;
    let created = emu
        .client()
        .create_container_group(&nginx("persisted"))
        .await
        .expect("create");
    emu.stop().await;
    assert!(state.exists());
    let emu = Emu::start(config).await;
    let g = describe_one(&emu.client(), &created.container_group_id)
        .await
        .expect("group survived the restart");
    assert_eq!(g.container_group_name, "persisted");
    emu.stop().await;
}
