//! The kubelet API over real TLS on loopback: client certificates from a test CA, bearer
//! tokens through a fake review API, and an in-memory backend.

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use super::auth::{Attributes, AuthError};
use super::stats::Summary;
use super::*;
use crate::config::{KubeletAuthorization, KubeletServerConfig};

#[derive(Clone, Default)]
struct MemoryBackend {
    seen_options: Arc<Mutex<Option<LogOptions>>>,
}

impl PodBackend for MemoryBackend {
    async fn pods(&self) -> Result<Vec<Pod>, BackendError> {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "nginx", "namespace": "default", "uid": "uid-1"},
            "spec": {"nodeName": "vk", "containers": [{"name": "nginx", "image": "nginx"}]}
        }))
        .map_err(|e| BackendError::Internal(e.to_string()))?;
        Ok(vec![pod])
    }
    async fn running_pods(&self) -> Result<Vec<Pod>, BackendError> {
        Ok(Vec::new())
    }
    async fn container_logs(
        &self,
        ns: &str,
        pod: &str,
        c: &str,
        o: LogOptions,
    ) -> Result<LogStream, BackendError> {
        if (ns, pod, c) != ("default", "nginx", "nginx") {
            return Err(BackendError::NotFound(format!("{ns}/{pod}/{c}")));
        }
        *self.seen_options.lock() = Some(o);
        Ok(Box::pin(futures::stream::iter(vec![
            Ok(Bytes::from("line 1\n")),
            Ok(Bytes::from("line 2\n")),
        ])))
    }
    async fn stats_summary(&self) -> Result<Summary, BackendError> {
        Ok(Summary::empty("vk"))
    }
}

/// Token "good" is alice, who may use `proxy` but not `stats`; certificate users are allowed.
struct Reviews;
impl AuthApi for Reviews {
    async fn review_token(&self, token: &str) -> Result<Option<UserInfo>, AuthError> {
        Ok((token == "good").then(|| UserInfo {
            name: "alice".into(),
            groups: vec![],
            uid: None,
        }))
    }
    async fn review_access(&self, user: &UserInfo, attrs: &Attributes) -> Result<bool, AuthError> {
        Ok(user.name == "kube-apiserver-kubelet-client" || attrs.subresource == "proxy")
    }
}

struct Pki {
    ca_pem: String,
    server_cert: std::path::PathBuf,
    server_key: std::path::PathBuf,
    client_ca: std::path::PathBuf,
    client_identity_pem: String,
    stranger_identity_pem: String,
}

fn ca(name: &str) -> (Issuer<'static, KeyPair>, String) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).expect("ca cert");
    (Issuer::new(params, key), cert.pem())
}

fn leaf(issuer: &Issuer<'_, KeyPair>, cn: &str, sans: Vec<String>) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(sans).expect("params");
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    let cert = params.signed_by(&key, issuer).expect("leaf");
    (cert.pem(), key.serialize_pem())
}

fn pki(dir: &Path) -> Pki {
    let (server_ca, server_ca_pem) = ca("kubelet-serving-ca");
    let (client_ca, client_ca_pem) = ca("cluster-ca");
    let (stranger_ca, _) = ca("stranger-ca");
    let (cert, key) = leaf(
        &server_ca,
        "vk",
        vec!["localhost".into(), "127.0.0.1".into()],
    );
    let (client_cert, client_key) = leaf(&client_ca, "kube-apiserver-kubelet-client", vec![]);
    let (stranger_cert, stranger_key) = leaf(&stranger_ca, "kube-apiserver-kubelet-client", vec![]);
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    Pki {
        ca_pem: server_ca_pem,
        server_cert: write("server.crt", &cert),
        server_key: write("server.key", &key),
        client_ca: write("client-ca.crt", &client_ca_pem),
        client_identity_pem: format!("{client_cert}{client_key}"),
        stranger_identity_pem: format!("{stranger_cert}{stranger_key}"),
    }
}

fn http_client(ca_pem: &str, identity: Option<&str>) -> reqwest::Client {
    crate::testing::install_crypto();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("pem")).expect("root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match identity {
        Some(pem) => {
            let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("certs");
            let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(pem.as_bytes()).expect("key");
            builder
                .with_client_auth_cert(certs, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .build()
        .expect("client")
}

use rustls_pki_types::pem::PemObject;

async fn start<B: PodBackend>(
    pki: &Pki,
    anonymous: bool,
    backend: B,
) -> (
    String,
    CancellationToken,
    tokio::task::JoinHandle<()>,
    Arc<Metrics>,
) {
    let cfg = KubeletServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        tls_cert_file: Some(pki.server_cert.clone()),
        tls_key_file: Some(pki.server_key.clone()),
        client_ca_file: Some(pki.client_ca.clone()),
        anonymous_auth: anonymous,
        authorization: KubeletAuthorization::Webhook,
    };
    let tls = server_config(&cfg, vec![]).expect("tls");
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let metrics = Arc::new(Metrics::new());
    let auth = Authenticator::new(Reviews, anonymous, KubeletAuthorization::Webhook);
    let app = router(backend, auth, "vk".into(), metrics.clone());
    let token = CancellationToken::new();
    let task = tokio::spawn(serve(listener, tls, app, token.clone()));
    (format!("https://localhost:{port}"), token, task, metrics)
}

#[tokio::test]
async fn anonymous_is_refused_and_a_cluster_certificate_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki(dir.path());
    let backend = MemoryBackend::default();
    let (base, token, task, metrics) = start(&pki, false, backend.clone()).await;

    let anon = http_client(&pki.ca_pem, None);
    assert_eq!(
        anon.get(format!("{base}/pods"))
            .send()
            .await
            .expect("send")
            .status(),
        401
    );

    let apiserver = http_client(&pki.ca_pem, Some(&pki.client_identity_pem));
    let pods: serde_json::Value = apiserver
        .get(format!("{base}/pods"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(pods["kind"], "PodList");
    assert_eq!(pods["items"][0]["metadata"]["uid"], "uid-1");
    let rp = apiserver
        .get(format!("{base}/runningpods/"))
        .send()
        .await
        .expect("send");
    assert_eq!(rp.status(), 200);
    let summary: serde_json::Value = apiserver
        .get(format!("{base}/stats/summary"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(summary["node"]["nodeName"], "vk");
    let text = apiserver
        .get(format!("{base}/metrics/resource"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains("# TYPE pod_cpu_usage_seconds_total counter"),
        "{text}"
    );

    let logs = apiserver
        .get(format!(
            "{base}/containerLogs/default/nginx/nginx?tailLines=10&timestamps=true&follow=true&limitBytes=100&sinceTime=2026-11-25T18:00:00Z"
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(logs.status(), 200);
    assert_eq!(logs.text().await.expect("text"), "line 1\nline 2\n");
    let seen = backend.seen_options.lock().clone().expect("backend called");
    assert_eq!(seen.tail_lines, Some(10));
    assert!(seen.timestamps && seen.follow);
    assert_eq!(seen.limit_bytes, Some(100));
    assert_eq!(seen.since_time.map(|t| t.as_second()), Some(1_795_629_600));

    let bad = apiserver
        .get(format!(
            "{base}/containerLogs/default/nginx/nginx?tailLines=x"
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(bad.status(), 400);
    let both = apiserver
        .get(format!(
            "{base}/containerLogs/default/nginx/nginx?sinceSeconds=5&sinceTime=2026-11-25T18:00:00Z"
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(both.status(), 400);
    let missing = apiserver
        .get(format!("{base}/containerLogs/default/other/c"))
        .send()
        .await
        .expect("send");
    assert_eq!(missing.status(), 404);
    // exec validates its query, then insists on a WebSocket upgrade.
    let exec = apiserver
        .post(format!("{base}/exec/default/nginx/nginx?command=ls"))
        .send()
        .await
        .expect("send");
    assert_eq!(exec.status(), 400);
    let exec = apiserver
        .post(format!(
            "{base}/exec/default/nginx/nginx?command=ls&stdout=true"
        ))
        .header("connection", "Upgrade")
        .header("upgrade", "SPDY/3.1")
        .send()
        .await
        .expect("send");
    assert_eq!(exec.status(), 400);
    assert!(
        exec.text()
            .await
            .expect("text")
            .contains("SPDY is not supported"),
        "SPDY clients are told why"
    );

    assert!(
        metrics
            .encode()
            .contains("vnode_kubelet_api_requests_total{route=\"pods\",code=\"401\"} 1")
    );
    token.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(2), task)
        .await
        .expect("stops")
        .expect("no panic");
}

#[tokio::test]
async fn a_certificate_from_another_ca_fails_the_handshake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki(dir.path());
    let (base, token, _task, _) = start(&pki, false, MemoryBackend::default()).await;
    let stranger = http_client(&pki.ca_pem, Some(&pki.stranger_identity_pem));
    assert!(
        stranger.get(format!("{base}/pods")).send().await.is_err(),
        "untrusted client cert must not connect"
    );
    token.cancel();
}

#[tokio::test]
async fn bearer_tokens_are_reviewed_and_authorised_per_subresource() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki(dir.path());
    let (base, token, _task, _) = start(&pki, false, MemoryBackend::default()).await;
    let c = http_client(&pki.ca_pem, None);
    let get = |path: &str, bearer: &str| c.get(format!("{base}{path}")).bearer_auth(bearer).send();
    assert_eq!(get("/pods", "good").await.expect("send").status(), 200);
    assert_eq!(
        get("/stats/summary", "good").await.expect("send").status(),
        403
    );
    assert_eq!(get("/pods", "forged").await.expect("send").status(), 401);
    token.cancel();
}

#[tokio::test]
async fn anonymous_access_can_be_enabled_explicitly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki(dir.path());
    let (base, token, _task, _) = start(&pki, true, MemoryBackend::default()).await;
    let anon = http_client(&pki.ca_pem, None);
    // Anonymous is authenticated as system:anonymous and then authorised: proxy yes, stats no.
    assert_eq!(
        anon.get(format!("{base}/healthz"))
            .send()
            .await
            .expect("send")
            .status(),
        200
    );
    assert_eq!(
        anon.get(format!("{base}/stats/summary"))
            .send()
            .await
            .expect("send")
            .status(),
        403
    );
    token.cancel();
}

#[test]
fn self_signed_certificate_is_generated_without_files() {
    let cfg = KubeletServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        tls_cert_file: None,
        tls_key_file: None,
        client_ca_file: None,
        anonymous_auth: false,
        authorization: KubeletAuthorization::Webhook,
    };
    assert!(server_config(&cfg, vec!["vk".into(), "127.0.0.1".into()]).is_ok());
}

mod eci;
