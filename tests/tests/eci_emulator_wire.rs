//! The emulator at the wire level, with hand-built requests: bad input gets the real error
//! code and envelope (never a panic or a bare 500), both transports (GET query, POST form
//! body) and both signature schemes, replay protection.

use std::time::Duration;

use vnode_eci::wire::{self, sign};
use vnode_eci_emulator::{
    DEFAULT_ACCESS_KEY_ID as AK, DEFAULT_ACCESS_KEY_SECRET as SK, EmulatorConfig, Profile,
};

struct Emu {
    base: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Emu {
    start_with(EmulatorConfig {
        profile: Profile::instant(),
        ..EmulatorConfig::default()
    })
    .await
}

async fn start_with(config: EmulatorConfig) -> Emu {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(vnode_eci_emulator::serve(listener, config, async move {
        let _ = rx.await;
    }));
    Emu {
        base: format!("http://{addr}"),
        _stop: tx,
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// v1 common parameters + signature over `params` for `method`.
fn v1_sign(
    method: &str,
    action: &str,
    params: &[(String, String)],
    nonce: &str,
    timestamp: &str,
) -> Vec<(String, String)> {
    let mut all = params.to_vec();
    all.extend(p(&[
        ("Action", action),
        ("Version", "2018-08-08"),
        ("Format", "JSON"),
        ("AccessKeyId", AK),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", nonce),
        ("Timestamp", timestamp),
    ]));
    let sig = sign::v1_signature(SK, &sign::v1_string_to_sign(method, &all));
    all.push(("Signature".into(), sig));
    all
}

fn now() -> String {
    wire::format_timestamp(jiff::Timestamp::now())
}

async fn v1_get(emu: &Emu, action: &str, params: &[(String, String)]) -> (u16, serde_json::Value) {
    let all = v1_sign("GET", action, params, &wire::new_nonce(), &now());
    let url = format!("{}/?{}", emu.base, wire::canonical_query(&all));
    let resp = http().get(url).send().await.expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON body"))
}

async fn v1_form(emu: &Emu, action: &str, params: &[(String, String)]) -> (u16, serde_json::Value) {
    let all = v1_sign("POST", action, params, &wire::new_nonce(), &now());
    // Python-style form encoding (space as '+') must be accepted.
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(all.iter())
        .finish();
    let resp = http()
        .post(format!("{}/", emu.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON body"))
}

fn assert_envelope(status: u16, body: &serde_json::Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["Code"], want_code, "{body}");
    for key in ["RequestId", "HostId", "Message", "Recommend"] {
        assert!(
            body[key].as_str().is_some_and(|s| !s.is_empty()),
            "{key} missing in {body}"
        );
    }
}

#[tokio::test]
async fn get_and_form_transports_work() {
    let emu = start().await;
    let create = p(&[
        ("RegionId", "cn-hangzhou"),
        ("ContainerGroupName", "form-1"),
        ("Container.1.Name", "app"),
        ("Container.1.Image", "nginx:1.25"),
        ("Container.1.Arg.1", "echo hello world*~"),
        ("Container.1.Tty", "True"),
        ("Container.1.Cpu", "1"),
        ("Tag.1.Key", "env"),
        ("Tag.1.Value", "test/ci"),
    ]);
    let (status, body) = v1_form(&emu, "CreateContainerGroup", &create).await;
    assert_eq!(status, 200, "{body}");
    let id = body["ContainerGroupId"].as_str().expect("id").to_string();
    assert!(body["RequestId"].as_str().is_some_and(|r| r.len() == 36));
    let ids = format!("[\"{id}\"]");
    let (status, body) = v1_get(
        &emu,
        "DescribeContainerGroups",
        &p(&[("RegionId", "cn-hangzhou"), ("ContainerGroupIds", &ids)]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let g = &body["ContainerGroups"][0];
    assert_eq!(g["ContainerGroupId"], id.as_str());
    assert_eq!(g["Containers"][0]["Args"][0], "echo hello world*~");
    assert_eq!(g["Containers"][0]["Tty"], true);
    assert_eq!(g["Tags"][0]["Value"], "test/ci");
    assert!(
        g["Volumes"].is_array() && g["Events"].is_array(),
        "lists are always arrays: {g}"
    );
}

/// With `record_calls`, every call's arrival and answer are served at `CALLS_PATH`, in
/// answer order, with the action and outcome; without it the path is 404.
#[tokio::test]
async fn recorded_calls_carry_their_timing() {
    let emu = start_with(EmulatorConfig {
        profile: Profile::instant(),
        record_calls: true,
        ..EmulatorConfig::default()
    })
    .await;
    let before = jiff::Timestamp::now().as_microsecond();
    let describe = p(&[("RegionId", "cn-hangzhou")]);
    let (status, body) = v1_get(&emu, "DescribeContainerGroups", &describe).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = v1_get(&emu, "NoSuchAction", &describe).await;
    assert_eq!(status, 404, "{body}");
    let after = jiff::Timestamp::now().as_microsecond();
    let timings: vnode_eci_emulator::CallTimings = http()
        .get(format!("{}{}", emu.base, vnode_eci_emulator::CALLS_PATH))
        .send()
        .await
        .expect("send")
        .error_for_status()
        .expect("recording is on")
        .json()
        .await
        .expect("JSON");
    let seen: Vec<(&str, &str)> = timings
        .calls
        .iter()
        .map(|c| (c.action.as_str(), c.outcome.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("DescribeContainerGroups", "ok"),
            ("unknown", "InvalidAction.NotFound")
        ]
    );
    for c in &timings.calls {
        assert!(before <= c.received_us, "{c:?}");
        assert!(c.received_us <= c.answered_us, "{c:?}");
        assert!(c.answered_us <= after, "{c:?}");
    }
    assert!(timings.calls[0].answered_us <= timings.calls[1].received_us);

    let unrecorded = start().await;
    let status = http()
        .get(format!(
            "{}{}",
            unrecorded.base,
            vnode_eci_emulator::CALLS_PATH
        ))
        .send()
        .await
        .expect("send")
        .status();
    assert_eq!(status.as_u16(), 404);
}

/// One request the emulator must refuse: the action, its parameters (signed by `v1_get`), and
/// the status, error code and a name the message must mention, as a real ECI endpoint answers.
struct BadRequest {
    action: &'static str,
    params: Vec<(String, String)>,
    status: u16,
    code: &'static str,
    message_names: Option<&'static str>,
}

fn bad(
    action: &'static str,
    params: &[(&str, &str)],
    status: u16,
    code: &'static str,
    message_names: Option<&'static str>,
) -> BadRequest {
    BadRequest {
        action,
        params: p(params),
        status,
        code,
        message_names,
    }
}

#[tokio::test]
async fn bad_input_gets_real_codes() {
    let emu = start().await;
    let region = ("RegionId", "cn-hangzhou");
    let [name, image] = [("Container.1.Name", "app"), ("Container.1.Image", "nginx")];
    let create = "CreateContainerGroup";

    let mut many_containers = p(&[region, ("ContainerGroupName", "x6")]);
    for i in 1..=21 {
        many_containers.push((format!("Container.{i}.Name"), format!("c{i}")));
        many_containers.push((format!("Container.{i}.Image"), "nginx".into()));
    }
    // One line per case: a table reads better than rustfmt's one-argument-per-line layout.
    #[rustfmt::skip]
    let cases = [
        bad("RunInstances", &[region], 404, "InvalidAction.NotFound", None),
        bad(create, &[("ContainerGroupName", "x1"), name, image], 400, "MissingParameter", Some("RegionId")),
        bad(create, &[region, name, image], 400, "MissingParameter", Some("ContainerGroupName")),
        bad(create, &[region, ("ContainerGroupName", "x2")], 400, "MissingParameter", None),
        bad(create, &[region, ("ContainerGroupName", "x3"), name, image, ("Container.1.Cpu", "lots")],
            400, "InvalidParameter", Some("Container.1.Cpu")),
        bad(create, &[region, ("ContainerGroupName", "x4"), name, image, ("RestartPolicy", "Sometimes")],
            400, "InvalidParameter", Some("RestartPolicy")),
        bad(create, &[region, ("ContainerGroupName", "Bad_Name"), name, image], 400, "InvalidParameter", None),
        // Oversized spec: 128 vCPU.
        bad(create, &[region, ("ContainerGroupName", "x5"), name, image, ("Cpu", "128"), ("Memory", "256")],
            400, "InvalidParameter.CpuMemory", None),
        BadRequest { action: create, params: many_containers, status: 400, code: "InvalidParameter", message_names: None },
        // Not a JSON list.
        bad("DescribeContainerGroups", &[region, ("ContainerGroupIds", "eci-1,eci-2")], 400, "InvalidParameter", None),
        bad("DescribeContainerGroups", &[region, ("Limit", "500")], 400, "InvalidParameter", None),
        bad("DescribeContainerGroups", &[region, ("NextToken", "zzz")], 400, "InvalidParameter", None),
        bad("DescribeContainerLog", &[region, ("ContainerGroupId", "eci-x"), ("ContainerName", "a"), ("Tail", "5000")],
            400, "InvalidParameter", None),
        bad("DescribeContainerLog", &[region, ("ContainerGroupId", "eci-x"), ("ContainerName", "a")],
            404, "InvalidParameter.NotFound", None),
        bad("DeleteContainerGroup", &[region], 400, "MissingParameter", None),
    ];
    for case in &cases {
        let (s, b) = v1_get(&emu, case.action, &case.params).await;
        assert_envelope(s, &b, case.status, case.code);
        if let Some(field) = case.message_names {
            let message = b["Message"].as_str().unwrap_or_default();
            assert!(
                message.contains(field),
                "{} {:?}: {b}",
                case.action,
                case.params
            );
        }
    }

    // Wrong version.
    let mut all = v1_sign(
        "GET",
        "DescribeContainerGroups",
        &p(&[region]),
        &wire::new_nonce(),
        &now(),
    );
    for (k, v) in all.iter_mut() {
        if k == "Version" {
            *v = "2014-05-26".into();
        }
    }
    all.retain(|(k, _)| k != "Signature");
    let sig = sign::v1_signature(SK, &sign::v1_string_to_sign("GET", &all));
    all.push(("Signature".into(), sig));
    let resp = http()
        .get(format!("{}/?{}", emu.base, wire::canonical_query(&all)))
        .send()
        .await
        .expect("send");
    let s = resp.status().as_u16();
    let b: serde_json::Value = resp.json().await.expect("json");
    assert_envelope(s, &b, 400, "InvalidVersion");

    // Other HTTP methods.
    let resp = http()
        .delete(format!("{}/", emu.base))
        .send()
        .await
        .expect("send");
    let s = resp.status().as_u16();
    let b: serde_json::Value = resp.json().await.expect("json");
    assert_envelope(s, &b, 404, "InvalidAction.NotFound");
}

#[tokio::test]
async fn authentication_failures() {
    let emu = start().await;
    let region = p(&[("RegionId", "cn-hangzhou")]);
    // No signature at all.
    let resp = http()
        .get(format!(
            "{}/?Action=DescribeContainerGroups&RegionId=cn-hangzhou",
            emu.base
        ))
        .send()
        .await
        .expect("send");
    let s = resp.status().as_u16();
    let b: serde_json::Value = resp.json().await.expect("json");
    assert_envelope(s, &b, 400, "IncompleteSignature");

    // Tampered parameter after signing.
    let mut all = v1_sign(
        "GET",
        "DescribeContainerGroups",
        &region,
        &wire::new_nonce(),
        &now(),
    );
    all.push(("Limit".into(), "5".into()));
    let resp = http()
        .get(format!("{}/?{}", emu.base, wire::canonical_query(&all)))
        .send()
        .await
        .expect("send");
    let s = resp.status().as_u16();
    let b: serde_json::Value = resp.json().await.expect("json");
    assert_envelope(s, &b, 400, "SignatureDoesNotMatch");
    assert!(
        b["Message"]
            .as_str()
            .unwrap_or_default()
            .contains("server string to sign is:GET&%2F&"),
        "{b}"
    );

    // Expired timestamp.
    let old =
        wire::format_timestamp(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(3600));
    let all = v1_sign(
        "GET",
        "DescribeContainerGroups",
        &region,
        &wire::new_nonce(),
        &old,
    );
    let resp = http()
        .get(format!("{}/?{}", emu.base, wire::canonical_query(&all)))
        .send()
        .await
        .expect("send");
    let s = resp.status().as_u16();
    let b: serde_json::Value = resp.json().await.expect("json");
    assert_envelope(s, &b, 400, "InvalidTimeStamp.Expired");

    // Reused nonce.
    let nonce = wire::new_nonce();
    let first = v1_sign("GET", "DescribeContainerGroups", &region, &nonce, &now());
    let resp = http()
        .get(format!("{}/?{}", emu.base, wire::canonical_query(&first)))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 200);
    let again = v1_sign("GET", "DescribeContainerGroups", &region, &nonce, &now());
    let resp = http()
        .get(format!("{}/?{}", emu.base, wire::canonical_query(&again)))
        .send()
        .await
        .expect("send");
    let s = resp.status().as_u16();
    let b: serde_json::Value = resp.json().await.expect("json");
    assert_envelope(s, &b, 400, "SignatureNonceUsed");

    // v3 with a bad signature, and with an unsigned required header.
    let query = region.clone();
    let date = now();
    let nonce = wire::new_nonce();
    let host = emu.base.trim_start_matches("http://").to_string();
    let headers = p(&[
        ("host", &host),
        ("x-acs-action", "DescribeContainerGroups"),
        ("x-acs-version", "2018-08-08"),
        ("x-acs-date", &date),
        ("x-acs-signature-nonce", &nonce),
        ("x-acs-content-sha256", wire::EMPTY_BODY_SHA256),
    ]);
    let v3 = sign::V3Request {
        method: "POST",
        path: "/",
        query: &query,
        headers: &headers,
        payload_sha256: wire::EMPTY_BODY_SHA256,
    };
    let good = v3.authorization(AK, SK);
    let bad = good.replace("Signature=", "Signature=00");
    let send = |authz: String, nonce: String| {
        let url = format!("{}/?{}", emu.base, wire::canonical_query(&query));
        http()
            .post(url)
            .header("x-acs-action", "DescribeContainerGroups")
            .header("x-acs-version", "2018-08-08")
            .header("x-acs-date", date.clone())
            .header("x-acs-signature-nonce", nonce)
            .header("x-acs-content-sha256", wire::EMPTY_BODY_SHA256)
            .header("authorization", authz)
            .send()
    };
    let resp = send(bad, nonce.clone()).await.expect("send");
    let s = resp.status().as_u16();
    let b: serde_json::Value = resp.json().await.expect("json");
    assert_envelope(s, &b, 400, "SignatureDoesNotMatch");
    assert!(
        b["Message"]
            .as_str()
            .unwrap_or_default()
            .contains("server CanonicalRequest is"),
        "{b}"
    );
    let resp = send(good.clone(), nonce.clone()).await.expect("send");
    assert_eq!(
        resp.status().as_u16(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let resp = send(good, nonce).await.expect("send");
    let s = resp.status().as_u16();
    let b: serde_json::Value = resp.json().await.expect("json");
    assert_envelope(s, &b, 400, "SignatureNonceUsed");
    let unsigned_action =
        format!("ACS3-HMAC-SHA256 Credential={AK},SignedHeaders=host;x-acs-date,Signature=00");
    let resp = send(unsigned_action, wire::new_nonce())
        .await
        .expect("send");
    let s = resp.status().as_u16();
    let b: serde_json::Value = resp.json().await.expect("json");
    assert_envelope(s, &b, 400, "IncompleteSignature");
    let unknown = "ACS3-HMAC-SHA256 Credential=someone-else,SignedHeaders=host;x-acs-action;x-acs-date;x-acs-signature-nonce,Signature=00".to_string();
    let resp = send(unknown, wire::new_nonce()).await.expect("send");
    let s = resp.status().as_u16();
    let b: serde_json::Value = resp.json().await.expect("json");
    assert_envelope(s, &b, 404, "InvalidAccessKeyId.NotFound");
}
