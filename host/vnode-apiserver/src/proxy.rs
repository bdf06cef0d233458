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

pub(crate) async fn pod_log(
    state: &AppState,
    ns: &str,
    name: &str,
    q: &std::collections::HashMap<String, String>,
) -> Result<Response, ApiError> {
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
    let base = kubelet_base(&node)?;
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
