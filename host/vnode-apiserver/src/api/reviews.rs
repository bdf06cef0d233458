//! The create-only APIs that answer questions instead of storing objects: TokenRequest
//! (`serviceaccounts/{name}/token`), TokenReview, SubjectAccessReview and
//! SelfSubjectAccessReview. Authorisation to call them was checked by the caller.

use std::time::Duration;

use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use super::{AppState, Target, token_user};
use crate::auth::{self, Attributes, User};
use crate::resources::{self, RESOURCES, ids};
use crate::status::{ApiError, json_response};
use crate::store::now_rfc3339;

/// Longest token lifetime handed out (upstream's `--service-account-max-token-expiration`
/// is unset by default; a day keeps the in-memory table small).
const MAX_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// Lifetime when the request names none (upstream: one hour).
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Serves the request if it is one of the review APIs; `None` lets the normal verbs handle it.
pub(super) fn handle(
    state: &AppState,
    user: &User,
    method: &Method,
    t: &Target,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Result<Response, ApiError>> {
    let token_request = t.res == ids::SERVICEACCOUNTS && t.sub.as_deref() == Some("token");
    if !token_request && !resources::is_review(t.res) {
        return None;
    }
    if method != Method::POST || (!token_request && t.name.is_some()) {
        return Some(Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        ))));
    }
    let kind = if token_request {
        "TokenRequest"
    } else {
        RESOURCES[t.res].kind
    };
    let body = match super::decode_body(headers, body, kind, "v1") {
        Ok(v) => v,
        Err(e) => return Some(Err(e)),
    };
    Some(if token_request {
        token(state, t, &body)
    } else {
        match RESOURCES[t.res].plural {
            "tokenreviews" => Ok(token_review(state, body)),
            "subjectaccessreviews" => subject_access_review(state, body),
            "selfsubjectaccessreviews" => Ok(self_subject_access_review(state, user, body)),
            _ => Err(ApiError::no_route()),
        }
    })
}

/// `POST serviceaccounts/{name}/token`: a token bound to the ServiceAccount's UID.
fn token(state: &AppState, t: &Target, body: &Value) -> Result<Response, ApiError> {
    let ns = t.ns.as_deref().unwrap_or("");
    let name = t.name.as_deref().unwrap_or("");
    let sa = state
        .store
        .get(ids::SERVICEACCOUNTS, ns, name)
        .ok_or_else(|| ApiError::not_found("", "serviceaccounts", name))?;
    let spec = &body["spec"];
    let audiences: Vec<String> = match spec["audiences"].as_array() {
        Some(a) if !a.is_empty() => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => vec![auth::DEFAULT_AUDIENCE.to_string()],
    };
    let ttl = match spec["expirationSeconds"].as_i64() {
        None => DEFAULT_TOKEN_TTL,
        Some(s) if s < 600 => {
            return Err(ApiError::invalid(
                "TokenRequest",
                "authentication.k8s.io",
                name,
                vec![crate::status::Cause {
                    reason: "FieldValueInvalid",
                    message: format!(
                        "Invalid value: {s}: may not specify a duration less than 10 minutes"
                    ),
                    field: "spec.expirationSeconds".into(),
                }],
            ));
        }
        Some(s) => Duration::from_secs(s.unsigned_abs()).min(MAX_TOKEN_TTL),
    };
    let uid = sa["metadata"]["uid"].as_str().unwrap_or("");
    let (token, expires) = state.tokens.issue(ns, name, uid, audiences.clone(), ttl);
    let expires = jiff::Timestamp::try_from(expires)
        .map(|ts| ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    Ok(json_response(
        StatusCode::CREATED,
        &json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": { "name": name, "namespace": ns, "creationTimestamp": now_rfc3339() },
            "spec": {
                "audiences": audiences,
                "expirationSeconds": ttl.as_secs(),
                "boundObjectRef": spec["boundObjectRef"],
            },
            "status": { "token": token, "expirationTimestamp": expires },
        }),
    ))
}

/// `POST tokenreviews`: who a bearer token belongs to.
fn token_review(state: &AppState, mut review: Value) -> Response {
    let token = review["spec"]["token"].as_str().unwrap_or("").to_string();
    let wanted: Vec<String> = review["spec"]["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let status = match state.tokens.authenticate(&token, &state.store) {
        Some((user, audiences)) => {
            let matching: Vec<&String> = if wanted.is_empty() {
                audiences.iter().collect()
            } else {
                audiences.iter().filter(|a| wanted.contains(a)).collect()
            };
            if matching.is_empty() {
                json!({ "authenticated": false, "error": "token audiences do not match" })
            } else {
                json!({ "authenticated": true, "user": user_json(&user), "audiences": matching })
            }
        }
        None => match token_user(state, &token) {
            Some(user) => json!({ "authenticated": true, "user": user_json(&user) }),
            None => json!({ "authenticated": false, "error": "invalid bearer token" }),
        },
    };
    review["apiVersion"] = json!("authentication.k8s.io/v1");
    review["kind"] = json!("TokenReview");
    review["status"] = status;
    json_response(StatusCode::CREATED, &review)
}

fn user_json(u: &User) -> Value {
    json!({ "username": u.name, "uid": u.uid, "groups": u.groups })
}

fn attributes_of(spec: &Value) -> Attributes {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let ra = &spec["resourceAttributes"];
    if ra.is_object() {
        Attributes {
            verb: s(&ra["verb"]),
            group: s(&ra["group"]),
            resource: s(&ra["resource"]),
            subresource: s(&ra["subresource"]),
            namespace: s(&ra["namespace"]),
            name: s(&ra["name"]),
            path: String::new(),
        }
    } else {
        let nra = &spec["nonResourceAttributes"];
        Attributes {
            verb: s(&nra["verb"]),
            path: s(&nra["path"]),
            ..Attributes::default()
        }
    }
}

fn review_status(state: &AppState, user: &User, attrs: &Attributes) -> Value {
    let (allowed, reason) = auth::authorize(&state.store, user, attrs);
    let mut status = json!({ "allowed": allowed });
    if !reason.is_empty() {
        status["reason"] = json!(reason);
    }
    status
}

/// `POST subjectaccessreviews`: may the named user do this.
fn subject_access_review(state: &AppState, mut review: Value) -> Result<Response, ApiError> {
    let spec = &review["spec"];
    let name = spec["user"].as_str().unwrap_or("").to_string();
    let groups: Vec<String> = spec["groups"]
        .as_array()
        .map(|g| {
            g.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if name.is_empty() && groups.is_empty() {
        return Err(ApiError::invalid(
            "SubjectAccessReview",
            "authorization.k8s.io",
            "",
            vec![crate::status::Cause {
                reason: "FieldValueRequired",
                message: "Required value: at least one of user or group must be specified".into(),
                field: "spec.user".into(),
            }],
        ));
    }
    let user = User {
        name,
        groups,
        uid: spec["uid"].as_str().unwrap_or("").to_string(),
    };
    let status = review_status(state, &user, &attributes_of(spec));
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    review["kind"] = json!("SubjectAccessReview");
    review["status"] = status;
    Ok(json_response(StatusCode::CREATED, &review))
}

/// `POST selfsubjectaccessreviews`: may I do this.
fn self_subject_access_review(state: &AppState, user: &User, mut review: Value) -> Response {
    let status = review_status(state, user, &attributes_of(&review["spec"]));
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    review["kind"] = json!("SelfSubjectAccessReview");
    review["status"] = status;
    json_response(StatusCode::CREATED, &review)
}
