//! The `scale` subresource of Deployments, ReplicaSets and StatefulSets (`kubectl scale`,
//! and the discovery entry `kubectl autoscale` looks for): an `autoscaling/v1` `Scale` view
//! of `spec.replicas`, `status.replicas` and the label selector.

use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::{AppState, Query, Target, dry_run};
use crate::patch::{self, PatchKind};
use crate::resources::{self, RESOURCES};
use crate::status::{ApiError, json_response};
use crate::store::{Change, Outcome};

/// The `Scale` view of an object of resource `res`: a workload's fields, or the paths a
/// CRD's `scale` subresource declares.
fn view_of(res: resources::ResourceId, obj: &Value) -> Value {
    let Some(paths) = RESOURCES.custom(res).and_then(|c| c.scale.clone()) else {
        return view(obj);
    };
    let read = |p: &str| {
        crate::crd::json_path(obj, p)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let mut status = json!({ "replicas": read(&paths.status_replicas).as_i64().unwrap_or(0) });
    if let Some(sel) = paths
        .label_selector
        .as_deref()
        .map(read)
        .filter(Value::is_string)
    {
        status["selector"] = sel;
    }
    scale_object(
        &obj["metadata"],
        read(&paths.spec_replicas).as_i64().unwrap_or(0),
        status,
    )
}

/// An `autoscaling/v1` `Scale` carrying the scaled object's identity.
fn scale_object(meta: &Value, spec_replicas: i64, status: Value) -> Value {
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": { "replicas": spec_replicas },
        "status": status,
    })
}

/// Writes the replica count where resource `res` keeps it.
fn set_replicas(
    res: resources::ResourceId,
    obj: &mut Value,
    replicas: i64,
) -> Result<(), ApiError> {
    match RESOURCES.custom(res).and_then(|c| c.scale.clone()) {
        Some(paths) => crate::crd::set_simple_path(obj, &paths.spec_replicas, json!(replicas)),
        None => {
            obj["spec"]["replicas"] = json!(replicas);
            Ok(())
        }
    }
}

/// The `Scale` view of a workload.
fn view(obj: &Value) -> Value {
    let selector: Vec<String> = obj["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    scale_object(
        &obj["metadata"],
        obj["spec"]["replicas"].as_i64().unwrap_or(1),
        json!({
            "replicas": obj["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector.join(","),
        }),
    )
}

/// `GET …/scale`.
pub(super) fn get(state: &AppState, t: &Target) -> Result<Response, ApiError> {
    let info = &RESOURCES[t.res];
    let name = t.name.clone().unwrap_or_default();
    let obj = state
        .store
        .get(
            resources::storage_of(t.res),
            t.ns.as_deref().unwrap_or(""),
            &name,
        )
        .ok_or_else(|| ApiError::not_found(info.group, info.plural, &name))?;
    Ok(json_response(StatusCode::OK, &view_of(t.res, &obj)))
}

/// `PUT` (a whole `Scale`) or `PATCH` (any patch of the `Scale` view) of `…/scale`: only
/// `spec.replicas` reaches the workload.
pub(super) fn write(
    state: &AppState,
    t: &Target,
    q: &Query,
    headers: &HeaderMap,
    body: &[u8],
    is_patch: bool,
) -> Result<Response, ApiError> {
    let info = &RESOURCES[t.res];
    let dry = dry_run(q)?;
    let name = t.name.clone().unwrap_or_default();
    let kind = if is_patch {
        let ct = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Some(PatchKind::from_content_type(ct).ok_or_else(|| ApiError::unsupported_media_type(ct))?)
    } else {
        None
    };
    let out = state.store.mutate(
        resources::storage_of(t.res),
        t.ns.as_deref().unwrap_or(""),
        &name,
        dry,
        |cur, _| {
            let mut scale = view_of(t.res, cur);
            match kind {
                Some(k) => patch::apply(k, &mut scale, body)?,
                None => {
                    scale = serde_json::from_slice(body)
                        .map_err(|e| ApiError::bad_request(format!("error decoding Scale: {e}")))?;
                }
            }
            let want_rv = scale["metadata"]["resourceVersion"].as_str().unwrap_or("");
            if !want_rv.is_empty() && Some(want_rv) != cur["metadata"]["resourceVersion"].as_str() {
                return Err(ApiError::stale(info.group, info.plural, &name));
            }
            let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
            if replicas < 0 {
                return Err(ApiError::invalid(
                    "Scale",
                    "autoscaling",
                    &name,
                    vec![crate::status::Cause {
                        reason: "FieldValueInvalid",
                        message: format!(
                            "Invalid value: {replicas}: must be greater than or equal to 0"
                        ),
                        field: "spec.replicas".into(),
                    }],
                ));
            }
            let mut new = (**cur).clone();
            set_replicas(t.res, &mut new, replicas)?;
            Ok(Change::Put(new))
        },
    )?;
    let obj = match out {
        Outcome::Stored(o) | Outcome::Deleted(o) => o,
    };
    Ok(json_response(StatusCode::OK, &view_of(t.res, &obj)))
}
