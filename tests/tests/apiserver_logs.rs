//! `kubectl logs` through `vnode apiserver` to a fake kubelet: the server dials the node's
//! InternalIP and kubelet port over TLS, verifies the kubelet's certificate against its CA,
//! presents its kubelet client certificate, passes the log options through, and streams.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vnode_tests::{VnodeProcess, kubectl};

/// What the fake kubelet saw.
#[derive(Debug, Default, Clone)]
struct Seen {
    request_line: String,
    client_cert: bool,
}

/// A TLS endpoint that requires a client certificate from the API server's CA and answers
/// `/containerLogs/...` with two chunks, 300 ms apart.
async fn fake_kubelet(dir: &std::path::Path) -> Result<(u16, Arc<std::sync::Mutex<Vec<Seen>>>)> {
    let pki = vnode_apiserver::Pki::load_or_create(dir)?;
    let cert = pki.issue_server_cert("fake-kubelet", &["127.0.0.1".into()])?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der().clone())?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert.cert_der.clone()], cert.private_key())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let client_cert = s
                    .get_ref()
                    .1
                    .peer_certificates()
                    .is_some_and(|c| !c.is_empty());
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&buf).into_owned();
                let request_line = text.lines().next().unwrap_or("").to_string();
                if let Ok(mut l) = log.lock() {
                    l.push(Seen {
                        request_line: request_line.clone(),
                        client_cert,
                    });
                }
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
                let _ = s.write_all(head.as_bytes()).await;
                for part in ["hello from the kubelet\n", "second line\n"] {
                    let _ = s
                        .write_all(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes())
                        .await;
                    let _ = s.flush().await;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                let _ = s.write_all(b"0\r\n\r\n").await;
                let _ = s.shutdown().await;
            });
        }
    });
    Ok((port, seen))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_reaches_the_kubelet_over_mutual_tls() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let d = dir.path().to_str().context("utf-8")?.to_string();
    let proc = VnodeProcess::start(
        &["apiserver", "--listen", "127.0.0.1:0", "--dir", &d],
        Duration::from_secs(30),
    )?;
    let _keep = proc;
    let kubeconfig = dir.path().join("kubeconfig");
    let (port, seen) = fake_kubelet(dir.path()).await?;

    let node = format!(
        r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"vk"}},
        "status":{{"addresses":[{{"type":"InternalIP","address":"127.0.0.1"}}],
        "daemonEndpoints":{{"kubeletEndpoint":{{"Port":{port}}}}},
        "conditions":[{{"type":"Ready","status":"True"}}]}}}}"#
    );
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"},
        "spec":{"nodeName":"vk","containers":[{"name":"app","image":"nginx"}]}}"#;
    let node_file = dir.path().join("node.json");
    let pod_file = dir.path().join("pod.json");
    std::fs::write(&node_file, node)?;
    std::fs::write(&pod_file, pod)?;
    let kc = kubeconfig.clone();
    let run = move |args: Vec<String>| {
        let kc = kc.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                kubectl(&kc, &refs)
            })
            .await?
        }
    };
    for f in [&node_file, &pod_file] {
        let (code, out, err) =
            run(vec!["create".into(), "-f".into(), f.display().to_string()]).await?;
        ensure!(code == 0, "{out}{err}");
    }

    let (code, out, err) = run(vec![
        "logs".into(),
        "web".into(),
        "--tail=5".into(),
        "--timestamps".into(),
    ])
    .await?;
    ensure!(code == 0, "kubectl logs failed: {err}");
    ensure!(out == "hello from the kubelet\nsecond line\n", "{out:?}");
    let calls = seen.lock().map_err(|_| anyhow::anyhow!("lock"))?.clone();
    let first = calls.first().context("kubelet never called")?;
    ensure!(
        first.client_cert,
        "the API server did not present its client certificate"
    );
    ensure!(
        first
            .request_line
            .starts_with("GET /containerLogs/default/web/app?"),
        "{first:?}"
    );
    ensure!(
        first.request_line.contains("tailLines=5")
            && first.request_line.contains("timestamps=true"),
        "{first:?}"
    );

    // follow=true streams: the first line arrives before the kubelet has sent the second.
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await?;
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::default_namespaced(kube::Client::try_from(cfg)?);
    let lp = kube::api::LogParams {
        follow: true,
        container: Some("app".into()),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let mut stream = Box::pin(pods.log_stream("web", &lp).await?);
    let mut first_chunk = [0u8; 64];
    let n = futures::AsyncReadExt::read(&mut stream, &mut first_chunk).await?;
    ensure!(
        n > 0 && first_chunk[..n].starts_with(b"hello"),
        "{:?}",
        String::from_utf8_lossy(&first_chunk[..n])
    );
    ensure!(
        started.elapsed() < Duration::from_millis(290),
        "the first chunk waited for the whole body"
    );

    // A pod that is not bound, and a container that does not exist: 400s from the server.
    let (code, _, err) = run(vec![
        "logs".into(),
        "web".into(),
        "-c".into(),
        "nope".into(),
    ])
    .await?;
    ensure!(
        code != 0 && err.contains("container nope is not valid for pod web"),
        "{err}"
    );
    Ok(())
}
