//! `kubectl exec` through `vnode apiserver`: kubectl 1.32 upgrades to WebSocket
//! (`v5.channel.k8s.io`); the server relays the upgrade to the node's kubelet endpoint over
//! mutual TLS and then copies the stream. The kubelet here is a small fake that speaks the
//! channel protocol: stdout on channel 1, the final status on channel 3.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use vnode_tests::{VnodeProcess, fake_kubelet_listener, kubectl, peer_presented_cert};

#[derive(Debug, Default, Clone)]
struct Seen {
    path: String,
    protocol: String,
    client_cert: bool,
}

#[allow(clippy::result_large_err)] // tungstenite's handshake callback returns its own Response
async fn fake_kubelet(dir: &std::path::Path) -> Result<(u16, Arc<Mutex<Vec<Seen>>>)> {
    let (listener, acceptor) = fake_kubelet_listener(dir).await?;
    let port = listener.local_addr()?.port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let client_cert = peer_presented_cert(&stream);
                let mut record = Seen {
                    client_cert,
                    ..Seen::default()
                };
                let picked = Arc::new(Mutex::new(String::new()));
                let picked2 = picked.clone();
                let path = Arc::new(Mutex::new(String::new()));
                let path2 = path.clone();
                let callback = move |req: &Request, mut resp: Response| {
                    if let Ok(mut p) = path2.lock() {
                        *p = req.uri().to_string();
                    }
                    let offered = req
                        .headers()
                        .get("sec-websocket-protocol")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let choice = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
                        .into_iter()
                        .find(|p| offered.split(',').any(|o| o.trim() == *p))
                        .unwrap_or("v4.channel.k8s.io");
                    if let (Ok(v), Ok(mut pk)) = (choice.parse(), picked2.lock()) {
                        resp.headers_mut().insert("sec-websocket-protocol", v);
                        *pk = choice.to_string();
                    }
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                record.path = path.lock().map(|p| p.clone()).unwrap_or_default();
                record.protocol = picked.lock().map(|p| p.clone()).unwrap_or_default();
                if let Ok(mut l) = log.lock() {
                    l.push(record);
                }
                let mut out = vec![1u8];
                out.extend_from_slice(b"hello from exec\n");
                let _ = ws.send(Message::binary(out)).await;
                let mut status = vec![3u8];
                status.extend_from_slice(br#"{"metadata":{},"status":"Success"}"#);
                let _ = ws.send(Message::binary(status)).await;
                let normal = CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                };
                let _ = ws.close(Some(normal)).await;
                // Drain until the client closes too.
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    Ok((port, seen))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_is_relayed_to_the_kubelet_over_websocket() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let d = dir.path().to_str().context("utf-8")?.to_string();
    let _proc = VnodeProcess::start(
        &["apiserver", "--listen", "127.0.0.1:0", "--dir", &d],
        Duration::from_secs(30),
    )?;
    let kubeconfig = dir.path().join("kubeconfig");
    let (port, seen) = fake_kubelet(dir.path()).await?;
    let objects = format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: vk\nstatus:\n  addresses:\n  - type: InternalIP\n    address: 127.0.0.1\n  daemonEndpoints:\n    kubeletEndpoint:\n      Port: {port}\n  conditions:\n  - type: Ready\n    status: \"True\"\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  nodeName: vk\n  containers:\n  - name: app\n    image: nginx\n"
    );
    let file = dir.path().join("objects.yaml");
    std::fs::write(&file, objects)?;
    let kc = kubeconfig.clone();
    let f = file.display().to_string();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || kubectl(&kc, &["create", "-f", &f])).await??;
    ensure!(code == 0, "{out}{err}");

    let kc = kubeconfig.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        kubectl(&kc, &["exec", "web", "--", "echo", "hi there"])
    })
    .await??;
    ensure!(code == 0, "kubectl exec failed ({code}): {out}{err}");
    ensure!(out == "hello from exec\n", "{out:?} {err}");
    let calls = seen.lock().map_err(|_| anyhow::anyhow!("lock"))?.clone();
    let first = calls.first().context("the kubelet was never dialled")?;
    ensure!(
        first.client_cert,
        "no client certificate presented to the kubelet"
    );
    ensure!(first.protocol == "v5.channel.k8s.io", "{first:?}");
    ensure!(
        first.path.starts_with("/exec/default/web/app?"),
        "{first:?}"
    );
    ensure!(
        first.path.contains("command=echo") && first.path.contains("command=hi+there")
            || first.path.contains("command=hi%20there"),
        "{first:?}"
    );
    Ok(())
}
