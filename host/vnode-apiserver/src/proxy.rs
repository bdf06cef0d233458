//! `pods/log`: proxied to the kubelet endpoint of the pod's node, as kube-apiserver does:
//! `https://<node InternalIP>:<daemonEndpoints.kubeletEndpoint.Port>/containerLogs/…`,
//! verifying the kubelet's certificate against the server's CA and presenting the
//! kubelet client certificate. The response streams through (for `follow=true`).

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use serde_json::Value;

use crate::api::AppState;
use crate::resources::ids;
use crate::status::ApiError;

/// Query parameters passed through to the kubelet.
const LOG_PARAMS: &[&str] = &[
    "follow",
    "tailLines",
    "sinceSeconds",
    "sinceTime",
    "timestamps",
    "limitBytes",
    "previous",
];

fn container_names(pod: &Value) -> Vec<String> {
    ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|l| pod["spec"][l].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect()
}

/// The kubelet base URL of a node, from its InternalIP and kubelet endpoint port.
pub(crate) fn kubelet_base(node: &Value) -> Result<String, ApiError> {
    let name = node["metadata"]["name"].as_str().unwrap_or("");
    let addrs = node["status"]["addresses"].as_array();
    let ip = addrs
        .and_then(|a| {
            a.iter()
                .find(|x| x["type"] == "InternalIP")
                .or_else(|| a.iter().find(|x| x["type"] == "Hostname"))
        })
        .and_then(|x| x["address"].as_str())
        .ok_or_else(|| ApiError::bad_request(format!("node {name} has no InternalIP address")))?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_i64()
        .unwrap_or(0);
    if port <= 0 || port > 65535 {
        return Err(ApiError::bad_request(format!(
            "node {name} has no kubelet endpoint port"
        )));
    }
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    Ok(format!("https://{host}:{port}"))
}

/// Resolves the container a request names (or the only one) and the pod's kubelet URL.
fn pod_target(
    state: &AppState,
    ns: &str,
    name: &str,
    q: &std::collections::HashMap<String, String>,
) -> Result<(String, String), ApiError> {
    let pod = state
        .store
        .get(ids::PODS, ns, name)
        .ok_or_else(|| ApiError::not_found("", "pods", name))?;
    let names = container_names(&pod);
    let container = match q.get("container").filter(|c| !c.is_empty()) {
        Some(c) => {
            if !names.contains(c) {
                return Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )));
            }
            c.clone()
        }
        None => {
            let main: Vec<&str> = pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str())
                .collect();
            match main.as_slice() {
                [only] => only.to_string(),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "a container name must be specified for pod {name}, choose one of: [{}]",
                        main.join(" ")
                    )));
                }
            }
        }
    };
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or("");
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let node = state
        .store
        .get(ids::NODES, "", node_name)
        .ok_or_else(|| ApiError::not_found("", "nodes", node_name))?;
    Ok((container, kubelet_base(&node)?))
}

/// Headers of the client's upgrade request that the kubelet needs to see.
const UPGRADE_HEADERS: &[&str] = &[
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "x-stream-protocol-version",
    "content-length",
];

/// `pods/exec` and `pods/attach`: relays the connection upgrade (WebSocket, e.g. kubectl
/// 1.32's `v5.channel.k8s.io`, or SPDY/3.1) to the kubelet's `/exec|/attach/{ns}/{pod}/{container}`
/// over mutual TLS, then copies bytes both ways, as kube-apiserver's upgrade-aware proxy
/// does. The handshake (key, accept, subprotocol) is the kubelet's.
pub(crate) async fn pod_upgrade(
    state: &AppState,
    ns: &str,
    name: &str,
    sub: &str,
    q: &std::collections::HashMap<String, String>,
    raw_query: &str,
    mut req: axum::extract::Request,
) -> Result<Response, ApiError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (container, base) = pod_target(state, ns, name, q)?;
    let wants_upgrade = req
        .headers()
        .get(http::header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"));
    if !wants_upgrade {
        return Err(ApiError::bad_request(format!(
            "Upgrade request required: pods/{sub} needs a WebSocket or SPDY connection upgrade"
        )));
    }
    let url =
        reqwest::Url::parse(&base).map_err(|e| ApiError::internal(format!("kubelet URL: {e}")))?;
    let host = url
        .host_str()
        .unwrap_or("")
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let port = url.port().unwrap_or(10250);
    let path = {
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let mut p = format!("/{sub}/{}/{}/{}", enc(ns), enc(name), enc(&container));
        if !raw_query.is_empty() {
            p.push('?');
            p.push_str(raw_query);
        }
        p
    };
    let connect_err = |e: String| ApiError::internal(format!("error dialing backend: {e}"));
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| connect_err(e.to_string()))?;
    let server_name = rustls_pki_types::ServerName::try_from(host.clone())
        .map_err(|e| connect_err(e.to_string()))?;
    let mut tls = tokio_rustls::TlsConnector::from(state.kubelet_tls.clone())
        .connect(server_name, tcp)
        .await
        .map_err(|e| connect_err(e.to_string()))?;
    let mut head = format!(
        "{} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n",
        req.method()
    );
    for (k, v) in req.headers() {
        if UPGRADE_HEADERS.contains(&k.as_str())
            && let Ok(v) = v.to_str()
        {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes())
        .await
        .map_err(|e| connect_err(e.to_string()))?;
    // Read the kubelet's response head; bytes after it already belong to the stream.
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        let mut chunk = [0u8; 1024];
        let n = tls
            .read(&mut chunk)
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        if n == 0 {
            return Err(connect_err(
                "the kubelet closed the connection during the upgrade".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err(connect_err(
                "the kubelet's response head is too large".into(),
            ));
        }
    };
    let head_text = String::from_utf8_lossy(&buf[..end]).into_owned();
    let leftover = buf[end..].to_vec();
    let mut lines = head_text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(502);
    if code != 101 {
        let body = String::from_utf8_lossy(&leftover).trim().to_string();
        let mut e = ApiError::internal(format!(
            "the kubelet refused the {sub} upgrade: {status_line} {body}"
        ));
        if (400..500).contains(&code) {
            e = ApiError::bad_request(format!(
                "the kubelet refused the {sub} upgrade: {status_line} {body}"
            ));
        }
        return Err(e);
    }
    let mut resp = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for line in lines.filter(|l| !l.is_empty()) {
        if let Some((k, v)) = line.split_once(':') {
            resp = resp.header(k.trim(), v.trim());
        }
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "client upgrade failed");
                return;
            }
        };
        let mut client = hyper_util::rt::TokioIo::new(upgraded);
        if !leftover.is_empty() && client.write_all(&leftover).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut tls).await;
    });
    resp.body(Body::empty())
        .map_err(|e| ApiError::internal(e.to_string()))
}

pub(crate) async fn pod_log(
    state: &AppState,
    ns: &str,
    name: &str,
    q: &std::collections::HashMap<String, String>,
) -> Result<Response, ApiError> {
    let (container, base) = pod_target(state, ns, name, q)?;
    let mut url = reqwest::Url::parse(&format!("{base}/containerLogs/"))
        .map_err(|e| ApiError::internal(format!("kubelet URL: {e}")))?;
    url.path_segments_mut()
        .map_err(|_| ApiError::internal("kubelet URL cannot have a path"))?
        .pop_if_empty()
        .extend([ns, name, container.as_str()]);
    {
        let mut pairs = url.query_pairs_mut();
        for p in LOG_PARAMS {
            if let Some(v) = q.get(*p) {
                pairs.append_pair(p, v);
            }
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    tracing::debug!(%url, "proxying pod log");
    let resp = state
        .kubelet_http
        .get(url.clone())
        .send()
        .await
        .map_err(|e| ApiError::internal(format!("Get \"{url}\": {e}")))?;
    let status = resp.status();
    if !status.is_success() {
        let code = status.as_u16();
        let text = resp.text().await.unwrap_or_default();
        let mut e = ApiError::internal(format!("the kubelet answered {code}: {}", text.trim()));
        if code == 404 {
            e = ApiError::not_found("", "pods", name);
            e.message = text.trim().to_string();
        } else if code == 400 {
            e = ApiError::bad_request(text.trim().to_string());
        }
        return Err(e);
    }
    let ct = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(http::HeaderValue::from_static("text/plain"));
    let body = Body::from_stream(resp.bytes_stream());
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, ct)
        .body(body)
        .map_err(|e| ApiError::internal(e.to_string()))
}
