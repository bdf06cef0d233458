//! `kubectl logs` through `vnode apiserver` to a fake kubelet: the server dials the node's
//! InternalIP and kubelet port over TLS, verifies the kubelet's certificate against its CA,
//! presents its kubelet client certificate, passes the log options through, and streams.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vnode_tests::{VnodeProcess, fake_kubelet_listener, kubectl, peer_presented_cert};

/// What the fake kubelet saw.
#[derive(Debug, Default, Clone)]
struct Seen {
    request_line: String,
    client_cert: bool,
}

/// A TLS endpoint that requires a client certificate from the API server's CA and answers
/// `/containerLogs/...` with two chunks; it sends the second only once `second_chunk` has a
/// permit for it, so a test knows what a client can have seen before that.
async fn fake_kubelet(
    dir: &std::path::Path,
    second_chunk: Arc<tokio::sync::Semaphore>,
) -> Result<(u16, Arc<std::sync::Mutex<Vec<Seen>>>)> {
    let (listener, acceptor) = fake_kubelet_listener(dir).await?;
    let port = listener.local_addr()?.port();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let log = log.clone();
            let second_chunk = second_chunk.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let client_cert = peer_presented_cert(&s);
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
                for (i, part) in ["hello from the kubelet\n", "second line\n"]
                    .into_iter()
                    .enumerate()
                {
                    if i == 1 {
                        let Ok(permit) = second_chunk.acquire().await else {
                            return;
                        };
                        permit.forget();
                    }
                    let _ = s
                        .write_all(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes())
                        .await;
                    let _ = s.flush().await;
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
    let second_chunk = Arc::new(tokio::sync::Semaphore::new(0));
    let (port, seen) = fake_kubelet(dir.path(), second_chunk.clone()).await?;

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

    // Whole bodies: the kubelet may send the second chunk right away.
    second_chunk.add_permits(1);
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

    // follow=true streams: the first line arrives while the kubelet holds the second back
    // (a server that waited for the whole body would wait forever).
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
    let mut stream = Box::pin(pods.log_stream("web", &lp).await?);
    let mut first_chunk = [0u8; 64];
    let n = tokio::time::timeout(
        Duration::from_secs(30),
        futures::AsyncReadExt::read(&mut stream, &mut first_chunk),
    )
    .await
    .context("the first chunk waited for the whole body")??;
    ensure!(
        n > 0 && first_chunk[..n].starts_with(b"hello"),
        "{:?}",
        String::from_utf8_lossy(&first_chunk[..n])
    );
    second_chunk.add_permits(1);
    let mut rest = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        futures::AsyncReadExt::read_to_end(&mut stream, &mut rest),
    )
    .await
    .context("the followed stream did not end after the kubelet's last chunk")??;
    let followed = [&first_chunk[..n], &rest[..]].concat();
    ensure!(
        followed == b"hello from the kubelet\nsecond line\n",
        "{:?}",
        String::from_utf8_lossy(&followed)
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
