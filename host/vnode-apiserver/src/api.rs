//! The REST API: routing, the verbs, watch streaming, and the pod subresources.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::admission::{self, FieldValidation};
use crate::auth::{self, Attributes, User};
use crate::patch::{self, PatchKind};
use crate::resources::{self, RESOURCES, ResourceId, ids};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::ssa;
use crate::status::{ApiError, json_response};
use crate::store::{
    Change, EventKind, Inner, Object, ObjectOutcome, Outcome, Store, WatchEvent, now_rfc3339,
};
use crate::tables::{self, IncludeObject};

mod reviews;
mod scale;

/// Largest request body accepted (upstream's limit).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// Shared server state.
pub(crate) struct AppState {
    pub store: Arc<Store>,
    pub token: String,
    pub server_address: String,
    pub kubelet_http: reqwest::Client,
    pub kubelet_tls: Arc<rustls::ClientConfig>,
    pub shutdown: CancellationToken,
    pub bookmark_interval: Duration,
    pub ca_pem: String,
    /// Service-account tokens issued through `serviceaccounts/token`.
    pub tokens: auth::TokenIssuer,
    /// One JSON line per request, when configured.
    pub audit: auth::SharedAudit,
    /// Chaos switch: end each watch after a random time up to this long.
    pub drop_watches_every: Option<Duration>,
}

/// Per-connection facts the TLS layer learned.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    /// Identity of the client certificate (verified against the CA in the handshake).
    pub cert_user: Option<Arc<User>>,
    /// Cancelling this resets the whole TCP connection (only set when watches are dropped
    /// on purpose, see [`AppState::drop_watches_every`]).
    pub reset: Option<CancellationToken>,
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// Namespaces and service accounts a fresh cluster has.
pub(crate) fn seed(state: &AppState) {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let mut obj =
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns } });
        admission::default_namespace(&mut obj);
        if state.store.create(ids::NAMESPACES, obj, false).is_ok() {
            populate_namespace(state, ns);
        }
    }
}

/// What a controller-manager would add to every namespace: the `default` service account
/// and the `kube-root-ca.crt` config map that pods' token volumes mount.
fn populate_namespace(state: &AppState, ns: &str) {
    let sa = json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": "default", "namespace": ns } });
    let _ = state.store.create(ids::SERVICEACCOUNTS, sa, false);
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "kube-root-ca.crt", "namespace": ns },
        "data": { "ca.crt": state.ca_pem },
    });
    let _ = state.store.create(ids::CONFIGMAPS, cm, false);
}

/// A parsed request path.
enum Route {
    Health,
    Version,
    Api,
    Apis,
    ApiGroup(String),
    Discovery(String, String),
    OpenApiV2,
    OpenApiV3Index,
    OpenApiV3(String, String),
    Resource(Target),
}

/// A resource request: `/api/v1/namespaces/{ns}/{plural}/{name}/{sub}` and friends.
#[derive(Debug, Clone)]
struct Target {
    res: ResourceId,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
    legacy_watch: bool,
}

fn parse_route(path: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segs.as_slice() {
        ["healthz" | "livez" | "readyz", ..] => Ok(Route::Health),
        ["version"] => Ok(Route::Version),
        ["api"] => Ok(Route::Api),
        ["apis"] => Ok(Route::Apis),
        ["apis", g] => Ok(Route::ApiGroup(g.to_string())),
        ["openapi", "v2"] => Ok(Route::OpenApiV2),
        ["openapi", "v3"] => Ok(Route::OpenApiV3Index),
        ["openapi", "v3", "api", v] => Ok(Route::OpenApiV3(String::new(), v.to_string())),
        ["openapi", "v3", "apis", g, v] => Ok(Route::OpenApiV3(g.to_string(), v.to_string())),
        ["api", v, rest @ ..] => resource_route("", v, rest),
        ["apis", g, v, rest @ ..] => resource_route(g, v, rest),
        _ => Err(ApiError::no_route()),
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Result<Route, ApiError> {
    if rest.is_empty() {
        return Ok(Route::Discovery(group.to_string(), version.to_string()));
    }
    let (legacy_watch, rest) = match rest {
        ["watch", tail @ ..] => (true, tail),
        _ => (false, rest),
    };
    let find =
        |plural: &str| resources::find(group, version, plural).ok_or_else(ApiError::no_route);
    let t = match rest {
        ["namespaces", ns, sub @ ("status" | "finalize")] => Target {
            res: ids::NAMESPACES,
            ns: None,
            name: Some(ns.to_string()),
            sub: Some(sub.to_string()),
            legacy_watch,
        },
        ["namespaces", ns, plural, tail @ ..] => {
            let res = find(plural)?;
            if !RESOURCES[res].namespaced || tail.len() > 2 {
                return Err(ApiError::no_route());
            }
            Target {
                res,
                ns: Some(ns.to_string()),
                name: tail.first().map(|s| s.to_string()),
                sub: tail.get(1).map(|s| s.to_string()),
                legacy_watch,
            }
        }
        [plural, tail @ ..] => {
            let res = find(plural)?;
            if tail.len() > 2 || (RESOURCES[res].namespaced && !tail.is_empty()) {
                return Err(ApiError::no_route());
            }
            Target {
                res,
                ns: None,
                name: tail.first().map(|s| s.to_string()),
                sub: tail.get(1).map(|s| s.to_string()),
                legacy_watch,
            }
        }
        [] => return Err(ApiError::no_route()),
    };
    if let Some(sub) = &t.sub
        && !RESOURCES[t.res].subresources.contains(&sub.as_str())
    {
        return Err(ApiError::no_route());
    }
    Ok(Route::Resource(t))
}

type Query = HashMap<String, String>;

fn parse_query(q: Option<&str>) -> Query {
    q.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// The caller: a CA-signed client certificate, the admin token, or a service-account token.
fn authenticated(state: &AppState, headers: &HeaderMap, conn: Option<&ConnInfo>) -> Option<User> {
    if let Some(u) = conn.and_then(|c| c.cert_user.as_deref()) {
        return Some(u.clone());
    }
    let v = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())?;
    let tok = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))?
        .trim();
    token_user(state, tok)
}

/// Who a bearer token belongs to (the admin token or an issued service-account token).
fn token_user(state: &AppState, tok: &str) -> Option<User> {
    // Constant-time enough for a loopback sandbox token: compare all bytes regardless.
    let (a, b) = (tok.as_bytes(), state.token.as_bytes());
    if a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0 {
        return Some(User::admin());
    }
    state
        .tokens
        .authenticate(tok, &state.store)
        .map(|(user, _)| user)
}

/// The RBAC attributes of a request.
fn attributes(
    method: &Method,
    path: &str,
    route: &Result<Route, ApiError>,
    q: &Query,
) -> Attributes {
    let Ok(Route::Resource(t)) = route else {
        let verb = match *method {
            Method::GET | Method::HEAD => "get",
            Method::POST => "post",
            Method::PUT => "put",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => "get",
        };
        return Attributes {
            verb: verb.into(),
            path: path.into(),
            ..Attributes::default()
        };
    };
    let info = info_of(t);
    let is_watch =
        t.legacy_watch || matches!(q.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (method, t.name.is_some(), t.sub.as_deref()) {
        // Upstream authorises the WebSocket (GET) upgrade of exec/attach as `create`.
        (_, _, Some("exec" | "attach")) => "create",
        (&Method::GET | &Method::HEAD, _, _) if is_watch => "watch",
        (&Method::GET | &Method::HEAD, false, _) => "list",
        (&Method::GET | &Method::HEAD, true, _) => "get",
        (&Method::POST, _, _) => "create",
        (&Method::PUT, _, _) => "update",
        (&Method::PATCH, _, _) => "patch",
        (&Method::DELETE, true, _) => "delete",
        (&Method::DELETE, false, _) => "deletecollection",
        _ => "get",
    };
    let ns = if t.res == ids::NAMESPACES {
        // Upstream: a namespace's own name is its namespace attribute.
        t.name.clone().unwrap_or_default()
    } else {
        t.ns.clone().unwrap_or_default()
    };
    Attributes {
        verb: verb.into(),
        group: info.group.into(),
        resource: info.plural.into(),
        subresource: t.sub.clone().unwrap_or_default(),
        namespace: ns,
        name: t.name.clone().unwrap_or_default(),
        path: path.into(),
    }
}

/// The upstream wording of an RBAC denial.
fn forbidden(user: &User, a: &Attributes) -> ApiError {
    if a.resource.is_empty() {
        return ApiError::forbidden(format!(
            "forbidden: User \"{}\" cannot {} path \"{}\"",
            user.name, a.verb, a.path
        ));
    }
    let res = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let what = if a.group.is_empty() {
        res.clone()
    } else {
        format!("{}.{}", a.resource, a.group)
    };
    let named = if a.name.is_empty() {
        String::new()
    } else {
        format!(" \"{}\"", a.name)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    let mut e = ApiError::forbidden(format!(
        "{what}{named} is forbidden: User \"{}\" cannot {} resource \"{res}\" in API group \"{}\" {scope}",
        user.name, a.verb, a.group
    ));
    e.details = Some(json!({ "name": a.name, "group": a.group, "kind": a.resource }));
    e
}

async fn handle(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let received = jiff::Timestamp::now();
    let audit = state.audit.clone();
    // Path, query, route and attributes are worked out once for authorisation, serving
    // and the audit record.
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query());
    let route = parse_route(&path);
    let attrs = attributes(&method, &path, &route, &query);
    let (user, attrs, resp) =
        handle_authenticated(state, req, method, path, query, route, attrs).await;
    if let Some(log) = audit {
        log.record(user.as_ref(), &attrs, resp.status().as_u16(), received);
    }
    resp
}

/// Authenticates and authorises, then serves. Returns the caller and the request's
/// attributes for the audit record.
async fn handle_authenticated(
    state: Arc<AppState>,
    req: Request,
    method: Method,
    path: String,
    query: Query,
    route: Result<Route, ApiError>,
    attrs: Attributes,
) -> (Option<User>, Attributes, Response) {
    let conn = req.extensions().get::<ConnInfo>().cloned();
    if matches!(route, Ok(Route::Health)) {
        return (None, attrs, (StatusCode::OK, "ok").into_response());
    }
    let Some(user) = authenticated(&state, req.headers(), conn.as_ref()) else {
        return (None, attrs, ApiError::unauthorized().into_response());
    };
    if !auth::authorize(&state.store, &user, &attrs).0 {
        tracing::debug!(user = %user.name, verb = %attrs.verb, resource = %attrs.resource, subresource = %attrs.subresource, namespace = %attrs.namespace, "forbidden");
        let resp = forbidden(&user, &attrs).into_response();
        return (Some(user), attrs, resp);
    }
    let resp = serve(&state, &user, method, path, query, route, req).await;
    (Some(user), attrs, resp)
}

async fn serve(
    state: &Arc<AppState>,
    user: &User,
    method: Method,
    path: String,
    query: Query,
    route: Result<Route, ApiError>,
    req: Request,
) -> Response {
    // exec/attach are connection upgrades (WebSocket or SPDY) relayed to the kubelet.
    if let Ok(Route::Resource(t)) = &route
        && t.res == ids::PODS
        && matches!(t.sub.as_deref(), Some("exec" | "attach"))
    {
        let raw_query = req.uri().query().unwrap_or("").to_string();
        let (ns, name, sub) = (
            t.ns.clone().unwrap_or_default(),
            t.name.clone().unwrap_or_default(),
            t.sub.clone().unwrap_or_default(),
        );
        return crate::proxy::pod_upgrade(state, &ns, &name, &sub, &query, &raw_query, req)
            .await
            .unwrap_or_else(IntoResponse::into_response);
    }
    let (parts, body) = req.into_parts();
    let conn_reset = parts
        .extensions
        .get::<ConnInfo>()
        .and_then(|c| c.reset.clone());
    let headers = parts.headers;
    let result = match route {
        Err(e) => Err(e),
        Ok(Route::Health) => Ok((StatusCode::OK, "ok").into_response()),
        Ok(Route::Version) => Ok(json_response(StatusCode::OK, &version())),
        Ok(Route::Api) => Ok(json_response(
            StatusCode::OK,
            &resources::api_versions(&state.server_address),
        )),
        Ok(Route::Apis) => Ok(json_response(StatusCode::OK, &resources::api_group_list())),
        Ok(Route::ApiGroup(g)) => resources::api_group_doc(&g)
            .map(|d| json_response(StatusCode::OK, &d))
            .ok_or_else(ApiError::no_route),
        Ok(Route::Discovery(g, v)) => resources::api_resource_list(&g, &v)
            .map(|d| json_response(StatusCode::OK, &d))
            .ok_or_else(ApiError::no_route),
        Ok(Route::OpenApiV2) => Ok(if accept(&headers).contains("protobuf") {
            (
                StatusCode::OK,
                [(http::header::CONTENT_TYPE, resources::OPENAPI_V2_PROTOBUF)],
                resources::openapi_v2_protobuf(),
            )
                .into_response()
        } else {
            json_response(StatusCode::OK, &resources::openapi_v2_json())
        }),
        Ok(Route::OpenApiV3Index) => Ok(crate::openapi::serve_index(&headers)),
        Ok(Route::OpenApiV3(g, v)) => Ok(crate::openapi::serve_group_version(
            &g,
            &v,
            query.get("hash").map(String::as_str),
            &headers,
        )),
        Ok(Route::Resource(t)) => {
            let body = if matches!(
                method,
                Method::POST | Method::PUT | Method::PATCH | Method::DELETE
            ) {
                match axum::body::to_bytes(body, MAX_BODY).await {
                    Ok(b) => b,
                    Err(_) => return ApiError::too_large().into_response(),
                }
            } else {
                Bytes::new()
            };
            let started = std::time::Instant::now();
            let r = match reviews::handle(state, user, &method, &t, &headers, &body) {
                Some(r) => r,
                None => {
                    // A write to a CRD (or to an object of a CRD being deleted) is
                    // followed, before the response, by what upstream's CRD controllers do:
                    // serve the resources, set the conditions, finish deletions.
                    let crd_write =
                        method != Method::GET && crate::crd::write_needs_reconcile(t.res);
                    let r = dispatch(
                        state,
                        &method,
                        t.clone(),
                        &query,
                        &headers,
                        body,
                        conn_reset,
                    )
                    .await;
                    if crd_write {
                        crate::crd::reconcile(&state.store);
                    }
                    r
                }
            };
            tracing::debug!(%method, %path, elapsed_ms = started.elapsed().as_millis() as u64, ok = r.is_ok(), "request");
            r
        }
    };
    result.unwrap_or_else(|e| {
        if e.code >= 500 {
            tracing::warn!(%method, %path, error = %e, "request failed");
        }
        e.into_response()
    })
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-vnode",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

async fn dispatch(
    state: &Arc<AppState>,
    method: &Method,
    t: Target,
    q: &Query,
    headers: &HeaderMap,
    body: Bytes,
    conn_reset: Option<CancellationToken>,
) -> Result<Response, ApiError> {
    let is_watch =
        t.legacy_watch || matches!(q.get("watch").map(String::as_str), Some("true" | "1"));
    let sub = t.sub.as_deref();
    match (method, t.name.is_some(), sub) {
        (&Method::GET, false, None) if is_watch => watch(state, &t, q, headers, conn_reset).await,
        (&Method::GET, true, None) if is_watch => {
            let mut q = q.clone();
            let name = t.name.clone().unwrap_or_default();
            q.insert("fieldSelector".into(), format!("metadata.name={name}"));
            let t = Target { name: None, ..t };
            watch(state, &t, &q, headers, conn_reset).await
        }
        (&Method::GET, false, None) => list(state, &t, q, headers),
        (&Method::GET, true, None | Some("status")) => get(state, &t, q, headers),
        (&Method::GET, true, Some("scale")) => scale::get(state, &t),
        (&Method::PUT, true, Some("scale")) => scale::write(state, &t, q, headers, &body, false),
        (&Method::PATCH, true, Some("scale")) => scale::write(state, &t, q, headers, &body, true),
        (&Method::GET, true, Some("log")) => {
            crate::proxy::pod_log(
                state,
                &t.ns.unwrap_or_default(),
                &t.name.unwrap_or_default(),
                q,
            )
            .await
        }
        (&Method::POST, false, None) => create(state, &t, q, headers, &body),
        (&Method::POST, true, Some("binding")) => bind(state, &t, &body),
        (&Method::PUT, true, None | Some("status") | Some("finalize")) => {
            update(state, &t, q, headers, &body)
        }
        (&Method::PATCH, true, None | Some("status")) => patch_object(state, &t, q, headers, &body),
        (&Method::DELETE, true, None) => delete(state, &t, q, &body),
        (&Method::DELETE, false, None) => delete_collection(state, &t, q, &body),
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        ))),
    }
}

fn info_of(t: &Target) -> &'static resources::ResourceInfo {
    &RESOURCES[t.res]
}

/// Whether `res` serves converted stored objects (events.k8s.io/v1 events, custom
/// resource versions other than the storage version).
fn is_view(res: ResourceId) -> bool {
    res == ids::EVENTS_V1 || crate::crd::is_converted_version(res)
}

/// Converts a stored object to the view `res` serves (events.k8s.io/v1 events, other
/// versions of custom resources).
fn to_view(res: ResourceId, obj: &Value) -> Value {
    if res == ids::EVENTS_V1 {
        admission::event_core_to_v1(obj)
    } else {
        crate::crd::to_served_version(res, obj).unwrap_or_else(|| obj.clone())
    }
}

/// Converts an object written through the view `res` to its storage form.
fn to_storage(res: ResourceId, obj: Value) -> Value {
    if res == ids::EVENTS_V1 {
        admission::event_v1_to_core(obj)
    } else {
        crate::crd::to_storage_version(res, obj)
    }
}

fn respond(code: StatusCode, res: ResourceId, obj: &Value) -> Response {
    if is_view(res) {
        json_response(code, &to_view(res, obj))
    } else {
        // Serialise the stored object in place instead of cloning it first.
        json_response(code, obj)
    }
}

/// Sends a stored version: its bytes as stored, or the view `res` serves.
fn respond_object(code: StatusCode, res: ResourceId, obj: &Object) -> Response {
    if is_view(res) {
        return respond(code, res, &obj.value());
    }
    (
        code,
        [(http::header::CONTENT_TYPE, "application/json")],
        Body::from(obj.json().clone()),
    )
        .into_response()
}

/// [`matches_selectors`] on a stored version's indexed fields (parsing it only for
/// events.k8s.io field selectors, which name fields of the converted view).
fn object_matches(res: ResourceId, obj: &Object, ls: &LabelSelector, fs: &FieldSelector) -> bool {
    // Custom objects too: objects stored before their CRD declared a `selectableFields`
    // entry have no index for it.
    if (res == ids::EVENTS_V1 || RESOURCES.is_custom(res)) && !fs.is_empty() {
        return matches_selectors(res, &obj.value(), ls, fs);
    }
    ls.matches_with(|k| obj.label(k)) && fs.matches_with(|p| obj.field(p))
}

fn dry_run(q: &Query) -> Result<bool, ApiError> {
    match q.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "unsupported dryRun value {other:?}: only \"All\""
        ))),
    }
}

fn accept(headers: &HeaderMap) -> &str {
    headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn selectors(t: &Target, q: &Query) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let ls = LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))?;
    let fs = FieldSelector::parse(
        q.get("fieldSelector").map(String::as_str).unwrap_or(""),
        t.res,
    )?;
    Ok((ls, fs))
}

fn matches_selectors(res: ResourceId, obj: &Value, ls: &LabelSelector, fs: &FieldSelector) -> bool {
    if fs.is_empty() {
        return ls.matches(obj);
    }
    // Field selectors name fields of the served view (events.k8s.io uses `regarding.*`).
    if res == ids::EVENTS_V1 {
        ls.matches(obj) && fs.matches(&admission::event_core_to_v1(obj))
    } else {
        ls.matches(obj) && fs.matches(obj)
    }
}

fn get(state: &AppState, t: &Target, q: &Query, headers: &HeaderMap) -> Result<Response, ApiError> {
    let info = info_of(t);
    let storage = resources::storage_of(t.res);
    let name = t.name.as_deref().unwrap_or("");
    let stored = state
        .store
        .get_object(storage, t.ns.as_deref().unwrap_or(""), name)
        .ok_or_else(|| ApiError::not_found(info.group, info.plural, name))?;
    if tables::wants_table(accept(headers)) {
        let obj = stored.value();
        let view = to_view(t.res, &obj);
        let rv = obj["metadata"]["resourceVersion"].as_str().unwrap_or("");
        let include = IncludeObject::parse(q.get("includeObject").map(String::as_str));
        return Ok(json_response(
            StatusCode::OK,
            &tables::table(storage, &[&view], rv, None, include),
        ));
    }
    Ok(respond_object(StatusCode::OK, t.res, &stored))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: u64,
    after_ns: String,
    after_name: String,
}

fn list(
    state: &AppState,
    t: &Target,
    q: &Query,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    use base64::Engine as _;
    let info = info_of(t);
    let storage = resources::storage_of(t.res);
    let (ls, fs) = selectors(t, q)?;
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let cont: Option<ContinueToken> = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?,
        ),
        None => None,
    };
    let after = cont
        .as_ref()
        .map(|c| (c.after_ns.clone(), c.after_name.clone()));
    let (mut items, rv) = state.store.list_objects(storage, t.ns.as_deref(), |o| {
        if let Some((ans, aname)) = &after
            && (o.namespace(), o.name()) <= (ans.as_str(), aname.as_str())
        {
            return false;
        }
        object_matches(t.res, o, &ls, &fs)
    });
    let list_rv = cont.as_ref().map_or(rv, |c| c.rv);
    let mut continue_token = None;
    let mut remaining = None;
    if items.len() > limit {
        // Upstream leaves the count out when selectors filter the list: it would be a guess.
        remaining = (ls.is_empty() && fs.is_empty()).then_some(items.len() - limit);
        items.truncate(limit);
        if let Some(last) = items.last() {
            let tok = ContinueToken {
                rv: list_rv,
                after_ns: last.namespace().to_string(),
                after_name: last.name().to_string(),
            };
            let raw = serde_json::to_vec(&tok).map_err(|e| ApiError::internal(e.to_string()))?;
            continue_token = Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw));
        }
    }
    let rv_s = list_rv.to_string();
    if tables::wants_table(accept(headers)) {
        let views: Vec<Value> = items.iter().map(|o| to_view(t.res, &o.value())).collect();
        let refs: Vec<&Value> = views.iter().collect();
        let include = IncludeObject::parse(q.get("includeObject").map(String::as_str));
        return Ok(json_response(
            StatusCode::OK,
            &tables::table(storage, &refs, &rv_s, continue_token.as_deref(), include),
        ));
    }
    // Serialise by hand so the (possibly many) shared objects are written, not cloned.
    let mut meta = json!({ "resourceVersion": rv_s });
    if let Some(c) = &continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(r) = remaining {
        meta["remainingItemCount"] = json!(r);
    }
    let mut out = Vec::with_capacity(items.iter().map(|o| o.json().len() + 1).sum::<usize>() + 256);
    out.extend_from_slice(b"{\"kind\":\"");
    out.extend_from_slice(info.kind.as_bytes());
    out.extend_from_slice(b"List\",\"apiVersion\":\"");
    out.extend_from_slice(info.api_version().as_bytes());
    out.extend_from_slice(b"\",\"metadata\":");
    serde_json::to_writer(&mut out, &meta).map_err(|e| ApiError::internal(e.to_string()))?;
    out.extend_from_slice(b",\"items\":[");
    for (i, o) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if is_view(t.res) {
            serde_json::to_writer(&mut out, &to_view(t.res, &o.value()))
                .map_err(|e| ApiError::internal(e.to_string()))?;
        } else {
            out.extend_from_slice(o.json());
        }
    }
    out.extend_from_slice(b"]}");
    Ok((
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, "application/json")],
        out,
    )
        .into_response())
}

/// Decodes a request body (JSON or YAML).
fn decode_body(
    headers: &HeaderMap,
    body: &[u8],
    kind: &str,
    version: &str,
) -> Result<Value, ApiError> {
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let base = ct.split(';').next().unwrap_or("").trim();
    let v: Value = match base {
        "application/json" | "" | "*/*" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "the object provided is unrecognized: couldn't get version/kind; json parse error: {e}"
            ))
        })?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the object provided is unrecognized: yaml parse error: {e}")))?,
        "application/vnd.kubernetes.protobuf" => crate::protobuf::decode(body)?,
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: the body must be a JSON object"
        )));
    }
    Ok(v)
}

/// Checks `kind`/`apiVersion` in a body against the endpoint and fills them in if absent.
fn check_type(t: &Target, obj: &mut Value) -> Result<(), ApiError> {
    let info = info_of(t);
    let want_av = info.api_version();
    match obj["kind"].as_str() {
        Some(k) if !k.is_empty() && k != info.kind => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({}) does not match the expected API version ({want_av}) or the kind in the data ({k}) does not match the expected kind ({})",
                obj["apiVersion"].as_str().unwrap_or(""),
                info.kind
            )));
        }
        _ => {}
    }
    match obj["apiVersion"].as_str() {
        Some(av) if !av.is_empty() && av != want_av => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_av})"
            )));
        }
        _ => {}
    }
    obj["kind"] = json!(info.kind);
    obj["apiVersion"] = json!(want_av);
    if !obj["metadata"].is_object() {
        if obj["metadata"].is_null() {
            obj["metadata"] = json!({});
        } else {
            return Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: metadata must be an object",
                info.kind, info.version, info.kind
            )));
        }
    }
    Ok(())
}

/// Runs typed decoding; unknown fields are an error under `Strict`, warnings otherwise,
/// and are dropped from the object unless strict (upstream decodes into typed structs,
/// which loses them).
fn field_check(
    res: ResourceId,
    obj: &mut Value,
    fv: FieldValidation,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    field_check_update(res, None, obj, fv, warnings)
}

/// [`field_check`] of a write over the stored `cur` (decodes only what changed where
/// [`admission::typed_check_update`] knows how).
fn field_check_update(
    res: ResourceId,
    cur: Option<&Value>,
    obj: &mut Value,
    fv: FieldValidation,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    // CRDs and custom objects: checked against their definitions.
    if let Some(r) = crate::crd::admit(res, obj, fv, warnings) {
        return r;
    }
    let unknown = admission::typed_check_update(res, cur, obj)?;
    if unknown.is_empty() {
        return Ok(());
    }
    if fv != FieldValidation::Strict {
        for path in &unknown {
            admission::remove_path(obj, path);
        }
    }
    if fv == FieldValidation::Ignore {
        return Ok(());
    }
    let msgs: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    if fv == FieldValidation::Strict {
        return Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            msgs.join(", ")
        )));
    }
    warnings.extend(msgs);
    Ok(())
}

fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let v = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(h) = http::HeaderValue::from_str(&v) {
            resp.headers_mut().append(http::header::WARNING, h);
        }
    }
    resp
}

fn ensure_namespace(state: &AppState, t: &Target) -> Result<(), ApiError> {
    if !info_of(t).namespaced {
        return Ok(());
    }
    let ns = t.ns.as_deref().unwrap_or("");
    let Some(nso) = state.store.get_object(ids::NAMESPACES, "", ns) else {
        return Err(ApiError::not_found("", "namespaces", ns));
    };
    if nso.is_deleting() {
        let mut e = ApiError::forbidden(format!(
            "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
            info_of(t).plural,
            ""
        ));
        e.details = Some(
            json!({ "kind": info_of(t).plural, "causes": [{ "reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace" }] }),
        );
        return Err(e);
    }
    Ok(())
}

/// Type-specific create admission; returns the object in storage form.
fn admit_create(state: &AppState, t: &Target, mut obj: Value) -> Result<Value, ApiError> {
    admission::normalize_quantities(&mut obj);
    let mut obj = to_storage(t.res, obj);
    match resources::storage_of(t.res) {
        ids::PODS => {
            let ns = t.ns.as_deref().unwrap_or("");
            let sa_name = obj["spec"]["serviceAccountName"]
                .as_str()
                .or(obj["spec"]["serviceAccount"].as_str())
                .filter(|s| !s.is_empty())
                .unwrap_or("default")
                .to_string();
            let sa = state.store.get(ids::SERVICEACCOUNTS, ns, &sa_name);
            let automount = sa
                .as_ref()
                .and_then(|s| s["automountServiceAccountToken"].as_bool());
            admission::default_pod(&mut obj, automount);
        }
        ids::NAMESPACES => admission::default_namespace(&mut obj),
        ids::SECRETS => admission::normalize_secret(&mut obj)?,
        ids::EVENTS => {
            let ns = t.ns.as_deref().unwrap_or("");
            let io_ns = obj["involvedObject"]["namespace"].as_str().unwrap_or("");
            if !io_ns.is_empty() && io_ns != ns {
                let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
                return Err(ApiError::invalid(
                    "Event",
                    "",
                    &name,
                    vec![crate::status::Cause {
                        reason: "FieldValueInvalid",
                        message: format!(
                            "Invalid value: \"{io_ns}\": does not match event.namespace"
                        ),
                        field: "involvedObject.namespace".into(),
                    }],
                ));
            }
        }
        _ => {}
    }
    Ok(obj)
}

fn create(
    state: &AppState,
    t: &Target,
    q: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let info = info_of(t);
    let dry = dry_run(q)?;
    let fv = FieldValidation::parse(q.get("fieldValidation").map(String::as_str))?;
    let mut obj = decode_body(headers, body, info.kind, info.version)?;
    check_type(t, &mut obj)?;
    let mut warnings = Vec::new();
    field_check(t.res, &mut obj, fv, &mut warnings)?;
    // Ownership is the server's record: a client's managedFields are replaced.
    if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("managedFields");
    }
    if let Some(w) = writer(t, q, headers, false) {
        ssa::record_update(None, &mut obj, &w);
    }
    create_object(state, t, dry, obj, warnings)
}

/// Creates a decoded object whose `managedFields` are already decided.
fn create_object(
    state: &AppState,
    t: &Target,
    dry: bool,
    mut obj: Value,
    warnings: Vec<String>,
) -> Result<Response, ApiError> {
    let info = info_of(t);
    crate::crd::check_create(t.res)?;
    if info.namespaced {
        let ns = t.ns.clone().ok_or_else(|| {
            ApiError::bad_request(format!(
                "the server could not find the requested resource ({} is namespaced)",
                info.plural
            ))
        })?;
        match obj["metadata"]["namespace"].as_str() {
            Some(bns) if !bns.is_empty() && bns != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => obj["metadata"]["namespace"] = json!(ns),
        }
    }
    admission::validate(t.res, &obj)?;
    ensure_namespace(state, t)?;
    let obj = admit_create(state, t, obj)?;
    let storage = resources::storage_of(t.res);
    if t.res == ids::EVENTS_V1 {
        // The events.k8s.io view is made from the stored value in hand rather than by
        // parsing the stored bytes back (the daemon writes ~7 events per pod).
        let created = state.store.create(storage, obj, dry)?;
        let view = admission::event_core_into_v1(Arc::unwrap_or_clone(created));
        return Ok(with_warnings(
            json_response(StatusCode::CREATED, &view),
            &warnings,
        ));
    }
    let created = state.store.create_object(storage, obj, dry)?;
    if storage == ids::NAMESPACES && !dry {
        populate_namespace(state, created.name());
    }
    Ok(with_warnings(
        respond_object(StatusCode::CREATED, t.res, &created),
        &warnings,
    ))
}

fn rv_of(v: &Value) -> &str {
    v["metadata"]["resourceVersion"].as_str().unwrap_or("")
}

/// Who a write is recorded for in `managedFields`: only writes that name a field manager
/// (kubectl always does) or touch an object that already has a record, so the daemon's
/// and benchmarks' writes pay nothing for it.
fn writer(t: &Target, q: &Query, headers: &HeaderMap, has_record: bool) -> Option<ssa::Writer> {
    let manager = q
        .get("fieldManager")
        .map(String::as_str)
        .filter(|m| !m.is_empty());
    if manager.is_none() && !has_record {
        return None;
    }
    let ua = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    Some(ssa::Writer::of_request(
        manager,
        ua,
        info_of(t).api_version(),
        t.sub.as_deref(),
    ))
}

fn has_record(obj: &Value) -> bool {
    obj["metadata"]
        .get("managedFields")
        .is_some_and(|m| m.as_array().is_some_and(|a| !a.is_empty()))
}

/// Applies the status-subresource split: on the main resource, status is kept from the
/// current object; on `/status`, only status (and nothing else) is taken from the new one.
fn split_status(t: &Target, cur: &Value, mut new: Value) -> Value {
    let info = info_of(t);
    match t.sub.as_deref() {
        Some("status") => with_current_except(cur, new, "status"),
        Some("finalize") => {
            let mut out = cur.clone();
            out["spec"]["finalizers"] = new["spec"]["finalizers"].take();
            out
        }
        _ if info.has_status() => {
            if let Some(s) = cur.get("status") {
                if new.get("status") != Some(s) {
                    new["status"] = s.clone();
                }
            } else if let Some(m) = new.as_object_mut() {
                m.remove("status");
            }
            new
        }
        _ => new,
    }
}

/// `cur` with `field` taken from `new` (`null` if `new` has none). Built from `new`,
/// restoring only the top-level fields that differ from `cur` (on a status write usually
/// none), so the whole object is not copied on every write.
fn with_current_except(cur: &Value, mut new: Value, field: &str) -> Value {
    let (Some(c), Some(n)) = (cur.as_object(), new.as_object_mut()) else {
        let mut out = cur.clone();
        out[field] = new[field].take();
        return out;
    };
    let taken = n.remove(field).unwrap_or(Value::Null);
    n.retain(|k, _| c.contains_key(k));
    for (k, v) in c {
        if k == field {
            continue;
        }
        match n.get_mut(k) {
            Some(x) if x == v => {}
            Some(x) => *x = v.clone(),
            None => {
                n.insert(k.clone(), v.clone());
            }
        }
    }
    n.insert(field.to_string(), taken);
    new
}

fn admit_update(t: &Target, cur: &Value, new: &Value) -> Result<(), ApiError> {
    if resources::storage_of(t.res) == ids::PODS && t.sub.is_none() {
        admission::validate_pod_update(cur, new)?;
    }
    if resources::storage_of(t.res) == ids::PODS
        && cur["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
        && new["spec"]["nodeName"] != cur["spec"]["nodeName"]
    {
        let name = new["metadata"]["name"].as_str().unwrap_or("");
        return Err(ApiError::invalid(
            "Pod",
            "",
            name,
            vec![crate::status::Cause {
                reason: "FieldValueForbidden",
                message: "Forbidden: field is immutable".into(),
                field: "spec.nodeName".into(),
            }],
        ));
    }
    Ok(())
}

fn update(
    state: &AppState,
    t: &Target,
    q: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let info = info_of(t);
    let dry = dry_run(q)?;
    let fv = FieldValidation::parse(q.get("fieldValidation").map(String::as_str))?;
    let name = t.name.clone().unwrap_or_default();
    let ns = t.ns.clone().unwrap_or_default();
    let mut obj = decode_body(headers, body, info.kind, info.version)?;
    check_type(t, &mut obj)?;
    let mut warnings = Vec::new();
    field_check(t.res, &mut obj, fv, &mut warnings)?;
    match obj["metadata"]["name"].as_str() {
        Some(n) if !n.is_empty() && n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        _ => obj["metadata"]["name"] = json!(name),
    }
    if info.namespaced {
        match obj["metadata"]["namespace"].as_str() {
            Some(b) if !b.is_empty() && b != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => obj["metadata"]["namespace"] = json!(ns),
        }
    }
    admission::validate(t.res, &obj)?;
    admission::normalize_quantities(&mut obj);
    let mut obj = to_storage(t.res, obj);
    if resources::storage_of(t.res) == ids::SECRETS {
        admission::normalize_secret(&mut obj)?;
    }
    let storage = resources::storage_of(t.res);
    let out = state
        .store
        .mutate_object(storage, &ns, &name, dry, |cur, _| {
            let want_rv = rv_of(&obj);
            if !want_rv.is_empty() && want_rv != rv_of(cur) {
                return Err(ApiError::stale(info.group, info.plural, &name));
            }
            let mut new = split_status(t, cur, obj);
            admit_update(t, cur, &new)?;
            if let Some(w) = writer(t, q, headers, has_record(cur)) {
                ssa::record_update(Some(cur), &mut new, &w);
            }
            Ok(Change::Put(new))
        })?;
    Ok(with_warnings(
        respond_object(StatusCode::OK, t.res, out.object()),
        &warnings,
    ))
}

fn patch_object(
    state: &AppState,
    t: &Target,
    q: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let info = info_of(t);
    let dry = dry_run(q)?;
    let fv = FieldValidation::parse(q.get("fieldValidation").map(String::as_str))?;
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let kind =
        PatchKind::from_content_type(ct).ok_or_else(|| ApiError::unsupported_media_type(ct))?;
    if kind == PatchKind::Strategic && RESOURCES.is_custom(t.res) {
        return Err(crate::crd::strategic_merge_unsupported());
    }
    let name = t.name.clone().unwrap_or_default();
    let ns = t.ns.clone().unwrap_or_default();
    let storage = resources::storage_of(t.res);
    if kind == PatchKind::Apply {
        if q.get("fieldManager").is_none_or(String::is_empty) {
            return Err(ApiError::bad_request(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        if state.store.get(storage, &ns, &name).is_none() {
            // Server-side apply creates missing objects.
            if t.sub.is_some() {
                return Err(ApiError::not_found(info.group, info.plural, &name));
            }
            let mut obj = applied_config(body)?;
            check_type(t, &mut obj)?;
            obj["metadata"]["name"] = json!(name);
            let mut warnings = Vec::new();
            field_check(t.res, &mut obj, fv, &mut warnings)?;
            let w = writer(t, q, headers, true).ok_or_else(|| ApiError::internal("no writer"))?;
            let obj = ssa::apply(None, &obj, &w, false, (info.group, info.plural, &name))?;
            return create_object(
                state,
                &Target {
                    name: None,
                    ..t.clone()
                },
                dry,
                obj,
                warnings,
            );
        }
    }
    let applied = if kind == PatchKind::Apply {
        let mut obj = applied_config(body)?;
        check_type(t, &mut obj)?;
        Some(obj)
    } else {
        None
    };
    let force = q.get("force").is_some_and(|f| f == "true");
    let mut warnings = Vec::new();
    let out = state
        .store
        .mutate_object(storage, &ns, &name, dry, |cur, _| {
            let mut doc = to_view(t.res, cur);
            match &applied {
                Some(config) => {
                    let w = writer(t, q, headers, true)
                        .ok_or_else(|| ApiError::internal("no writer"))?;
                    doc = ssa::apply(
                        Some(&doc),
                        config,
                        &w,
                        force,
                        (info.group, info.plural, &name),
                    )?;
                }
                None => patch::apply(kind, &mut doc, body)?,
            }
            check_type(t, &mut doc)?;
            let want_rv = rv_of(&doc);
            if !want_rv.is_empty() && want_rv != rv_of(cur) {
                return Err(ApiError::stale(info.group, info.plural, &name));
            }
            if doc["metadata"]["name"].as_str() != Some(name.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    doc["metadata"]["name"].as_str().unwrap_or("")
                )));
            }
            field_check_update(t.res, Some(cur), &mut doc, fv, &mut warnings)?;
            admission::validate(t.res, &doc)?;
            admission::normalize_quantities(&mut doc);
            let mut doc = to_storage(t.res, doc);
            if storage == ids::SECRETS {
                admission::normalize_secret(&mut doc)?;
            }
            let mut new = split_status(t, cur, doc);
            admit_update(t, cur, &new)?;
            if applied.is_none()
                && let Some(w) = writer(t, q, headers, has_record(cur))
            {
                ssa::record_update(Some(cur), &mut new, &w);
            }
            Ok(Change::Put(new))
        })?;
    Ok(with_warnings(
        respond_object(StatusCode::OK, t.res, out.object()),
        &warnings,
    ))
}

/// The configuration of an `application/apply-patch+yaml` body (YAML or JSON).
fn applied_config(body: &[u8]) -> Result<Value, ApiError> {
    let obj: Value = serde_yaml::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !obj.is_object() {
        return Err(ApiError::bad_request("apply patch must be an object"));
    }
    Ok(obj)
}

/// `DeleteOptions` from the body and/or query.
#[derive(Debug, Default, Clone)]
pub(crate) struct DeleteOpts {
    pub grace: Option<i64>,
    pub uid: Option<String>,
    pub rv: Option<String>,
    pub dry_run: bool,
}

fn delete_opts(q: &Query, body: &[u8]) -> Result<DeleteOpts, ApiError> {
    let mut o = DeleteOpts {
        dry_run: dry_run(q)?,
        ..Default::default()
    };
    if let Some(g) = q.get("gracePeriodSeconds") {
        o.grace = Some(
            g.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}")))?,
        );
    }
    if !body.is_empty() && body.iter().any(|b| !b.is_ascii_whitespace()) {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?;
        if let Some(g) = v["gracePeriodSeconds"].as_i64() {
            o.grace = Some(g);
        }
        o.uid = v["preconditions"]["uid"].as_str().map(String::from);
        o.rv = v["preconditions"]["resourceVersion"]
            .as_str()
            .map(String::from);
        if v["dryRun"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x == "All"))
        {
            o.dry_run = true;
        }
    }
    if o.grace.is_some_and(|g| g < 0) {
        o.grace = Some(0);
    }
    Ok(o)
}

/// Decides a deletion: immediate, graceful (pods on a live node), or held by finalizers.
pub(crate) fn delete_decision(
    res: ResourceId,
    cur: &Value,
    inner: &Inner,
    opts: &DeleteOpts,
) -> Result<Change, ApiError> {
    let info = &RESOURCES[res];
    let name = cur["metadata"]["name"].as_str().unwrap_or("");
    if let Some(uid) = &opts.uid
        && cur["metadata"]["uid"].as_str() != Some(uid.as_str())
    {
        return Err(ApiError::conflict(
            info.group,
            info.plural,
            name,
            format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                cur["metadata"]["uid"].as_str().unwrap_or("")
            ),
        ));
    }
    if let Some(rv) = &opts.rv
        && rv_of(cur) != rv
    {
        return Err(ApiError::conflict(
            info.group,
            info.plural,
            name,
            format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                rv_of(cur)
            ),
        ));
    }
    let has_finalizers = cur["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    let already = cur["metadata"]["deletionTimestamp"].is_string();
    if res == ids::NAMESPACES {
        if matches!(name, "default" | "kube-system" | "kube-public") {
            return Err(ApiError::forbidden(format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            )));
        }
        if already {
            return Ok(Change::Unchanged);
        }
        let mut n = cur.clone();
        n["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        n["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        n["status"]["phase"] = json!("Terminating");
        // The namespace controller finishes the job once the namespace is empty.
        if n["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty())
        {
            n["metadata"]["finalizers"] = json!([]);
        }
        return Ok(Change::Put(n));
    }
    if res == ids::PODS {
        let node = cur["spec"]["nodeName"].as_str().unwrap_or("");
        let on_live_node = !node.is_empty() && inner.get(ids::NODES, "", node).is_some();
        let terminal = matches!(
            cur["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        );
        let default_grace = cur["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .or(cur["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30);
        let grace = if !on_live_node || terminal {
            0
        } else {
            opts.grace.unwrap_or(default_grace)
        };
        if grace > 0 {
            if let Some(existing) = cur["metadata"]["deletionGracePeriodSeconds"].as_i64()
                && already
                && existing <= grace
            {
                return Ok(Change::Unchanged);
            }
            let mut n = cur.clone();
            let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
            n["metadata"]["deletionTimestamp"] =
                json!(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
            n["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            return Ok(Change::Put(n));
        }
    }
    if has_finalizers {
        let mut n = cur.clone();
        if !already {
            n["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        }
        n["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        return Ok(Change::Put(n));
    }
    Ok(Change::Delete)
}

fn delete(state: &AppState, t: &Target, q: &Query, body: &[u8]) -> Result<Response, ApiError> {
    let opts = delete_opts(q, body)?;
    let name = t.name.clone().unwrap_or_default();
    let ns = t.ns.clone().unwrap_or_default();
    let storage = resources::storage_of(t.res);
    let out = state
        .store
        .mutate_object(storage, &ns, &name, opts.dry_run, |cur, inner| {
            delete_decision(storage, cur, inner, &opts)
        })?;
    match out {
        ObjectOutcome::Stored(o) | ObjectOutcome::Deleted(o) => {
            Ok(respond_object(StatusCode::OK, t.res, &o))
        }
    }
}

fn delete_collection(
    state: &AppState,
    t: &Target,
    q: &Query,
    body: &[u8],
) -> Result<Response, ApiError> {
    let info = info_of(t);
    let opts = delete_opts(q, body)?;
    let (ls, fs) = selectors(t, q)?;
    let storage = resources::storage_of(t.res);
    let (items, _) = state.store.list(storage, t.ns.as_deref(), |o| {
        matches_selectors(t.res, o, &ls, &fs)
    });
    let mut out = Vec::new();
    for o in items {
        let ns = o["metadata"]["namespace"].as_str().unwrap_or("");
        let name = o["metadata"]["name"].as_str().unwrap_or("");
        match state
            .store
            .mutate(storage, ns, name, opts.dry_run, |cur, inner| {
                delete_decision(storage, cur, inner, &opts)
            }) {
            Ok(Outcome::Stored(o) | Outcome::Deleted(o)) => out.push(to_view(t.res, &o)),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let rv = state.store.read(|i| i.rv()).to_string();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "kind": format!("{}List", info.kind), "apiVersion": info.api_version(), "metadata": { "resourceVersion": rv }, "items": out }),
    ))
}

/// Binds a pod to a node (the `pods/binding` subresource and the scheduler).
pub(crate) fn bind_pod(
    store: &Store,
    ns: &str,
    name: &str,
    node: &str,
) -> Result<Arc<Value>, ApiError> {
    let out = store.mutate(ids::PODS, ns, name, false, |cur, _| {
        let existing = cur["spec"]["nodeName"].as_str().unwrap_or("");
        if !existing.is_empty() {
            return Err(ApiError::conflict(
                "",
                "pods",
                name,
                format!("pod {name} is already assigned to node \"{existing}\""),
            ));
        }
        if cur["metadata"]["deletionTimestamp"].is_string() {
            return Err(ApiError::conflict(
                "",
                "pods",
                name,
                format!("pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        let mut n = (**cur).clone();
        n["spec"]["nodeName"] = json!(node);
        set_condition(&mut n, "PodScheduled", "True", None, None);
        Ok(Change::Put(n))
    })?;
    match out {
        Outcome::Stored(o) | Outcome::Deleted(o) => Ok(o),
    }
}

/// Sets (or replaces) a pod condition, keeping `lastTransitionTime` if the status is unchanged.
pub(crate) fn set_condition(
    pod: &mut Value,
    ty: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
) {
    if !pod["status"]["conditions"].is_array() {
        pod["status"]["conditions"] = json!([]);
    }
    let Some(conds) = pod["status"]["conditions"].as_array_mut() else {
        return;
    };
    let mut c = json!({ "type": ty, "status": status, "lastProbeTime": null, "lastTransitionTime": now_rfc3339() });
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    match conds.iter_mut().find(|x| x["type"] == ty) {
        Some(existing) => {
            if existing["status"] == status {
                c["lastTransitionTime"] = existing["lastTransitionTime"].clone();
            }
            *existing = c;
        }
        None => conds.push(c),
    }
}

fn bind(state: &AppState, t: &Target, body: &[u8]) -> Result<Response, ApiError> {
    let b: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "Binding in version \"v1\" cannot be handled as a Binding: {e}"
        ))
    })?;
    let node = b["target"]["name"].as_str().unwrap_or("");
    if node.is_empty() {
        return Err(ApiError::invalid(
            "Binding",
            "",
            t.name.as_deref().unwrap_or(""),
            vec![crate::status::Cause {
                reason: "FieldValueRequired",
                message: "Required value".into(),
                field: "target.name".into(),
            }],
        ));
    }
    let ns = t.ns.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    let pod = bind_pod(&state.store, &ns, &name, node)?;
    record_event(
        &state.store,
        &pod,
        "Normal",
        "Scheduled",
        &format!("Successfully assigned {ns}/{name} to {node}"),
        "default-scheduler",
    );
    Ok(json_response(
        StatusCode::CREATED,
        &json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201 }),
    ))
}

/// Creates a core/v1 event about `obj`, as the scheduler and controllers do.
pub(crate) fn record_event(
    store: &Store,
    obj: &Value,
    ty: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let now = now_rfc3339();
    let suffix = format!("{:x}", jiff::Timestamp::now().as_nanosecond());
    let ev = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": { "name": format!("{name}.{suffix}"), "namespace": ns },
        "involvedObject": {
            "kind": obj["kind"],
            "namespace": ns,
            "name": name,
            "uid": obj["metadata"]["uid"],
            "apiVersion": obj["apiVersion"],
            "resourceVersion": obj["metadata"]["resourceVersion"],
        },
        "reason": reason,
        "message": message,
        "source": { "component": component },
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "type": ty,
        "eventTime": null,
        "reportingComponent": component,
        "reportingInstance": "",
    });
    if let Err(e) = store.create(ids::EVENTS, ev, false) {
        tracing::debug!(error = %e, "recording event failed");
    }
}

/// The watch verb: initial events (when asked for), then changes, bookmarks, timeout.
async fn watch(
    state: &Arc<AppState>,
    t: &Target,
    q: &Query,
    headers: &HeaderMap,
    conn_reset: Option<CancellationToken>,
) -> Result<Response, ApiError> {
    let (ls, fs) = selectors(t, q)?;
    let storage = resources::storage_of(t.res);
    let planned_drop = state
        .drop_watches_every
        .map(|every| WatchDrop::pick(every, conn_reset.is_some()));
    let ns = t.ns.clone();
    let bookmarks = matches!(
        q.get("allowWatchBookmarks").map(String::as_str),
        Some("true" | "1")
    );
    let send_initial = q.get("sendInitialEvents").map(String::as_str);
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let as_table = tables::wants_table(accept(headers));
    let rv_param = q.get("resourceVersion").map(String::as_str).unwrap_or("");
    let keep = {
        let (ls, fs, ns) = (ls.clone(), fs.clone(), ns.clone());
        let res = t.res;
        move |o: &Object| {
            ns.as_deref().is_none_or(|n| o.namespace() == n) && object_matches(res, o, &ls, &fs)
        }
    };

    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    // Set when this watch is to end with a stream error instead of a clean end.
    let (fail_tx, mut fail_rx) = tokio::sync::oneshot::channel::<()>();
    let view = t.res;
    let encode = move |ty: &str, obj: &Value| -> Bytes {
        let obj = to_view(view, obj);
        let obj = if as_table && ty != "BOOKMARK" && ty != "ERROR" {
            tables::table(
                resources::storage_of(view),
                &[&obj],
                rv_of(&obj),
                None,
                IncludeObject::Metadata,
            )
        } else {
            obj
        };
        let mut line =
            serde_json::to_vec(&json!({ "type": ty, "object": obj })).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    };
    // A stored version: every watcher that wants plain JSON of the stored form sends the
    // bytes serialised when the version was written.
    let shares_encoding = !as_table && !is_view(view);
    let encode_object = move |ty: &str, object: &Object| -> Bytes {
        if !shares_encoding {
            return encode(ty, &object.value());
        }
        crate::store::watch_line(ty, object.json())
    };
    // A change: sent as its own kind, the line is built once for all watchers.
    let encode_event = move |ty: &str, ev: &WatchEvent| -> Bytes {
        if shares_encoding && ty == ev.kind.as_str() {
            return ev.line();
        }
        encode_object(ty, &ev.object)
    };
    let info = &RESOURCES[t.res];
    let bookmark = move |rv: u64, initial_end: bool| -> Value {
        let mut meta = json!({ "resourceVersion": rv.to_string() });
        if initial_end {
            meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        json!({ "kind": info.kind, "apiVersion": info.api_version(), "metadata": meta })
    };

    // Decide the starting point synchronously so 410 and initial state are consistent.
    let mut initial: Vec<Arc<Object>> = Vec::new();
    let mut backlog: Vec<Arc<WatchEvent>> = Vec::new();
    let mut gone: Option<ApiError> = None;
    let start_rv;
    let initial_end_bookmark;
    let mut sub: broadcast::Receiver<Arc<WatchEvent>>;
    let wants_initial = match send_initial {
        Some("true") => true,
        Some("false") => false,
        _ => rv_param.is_empty() || rv_param == "0",
    };
    if wants_initial && (rv_param.is_empty() || rv_param == "0" || send_initial == Some("true")) {
        let (items, rv, rx2) = state
            .store
            .snapshot_and_subscribe(storage, ns.as_deref(), &keep);
        initial = items;
        start_rv = rv;
        sub = rx2;
        initial_end_bookmark = send_initial == Some("true");
    } else if rv_param.is_empty() || rv_param == "0" {
        let (rv, rx2) = state.store.subscribe_now(storage);
        sub = rx2;
        start_rv = rv;
        initial_end_bookmark = false;
    } else {
        let from: u64 = rv_param
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv_param}")))?;
        initial_end_bookmark = false;
        match state.store.subscribe_from(storage, from) {
            Ok((b, rx2)) => {
                backlog = b;
                sub = rx2;
                start_rv = from;
            }
            Err(e) => {
                gone = Some(e);
                sub = state.store.subscribe_now(storage).1;
                start_rv = from;
            }
        }
    }

    let store = state.store.clone();
    let shutdown = state.shutdown.clone();
    let interval = state.bookmark_interval;
    let keep = Arc::new(keep);
    tokio::spawn(async move {
        if let Some(e) = gone {
            let _ = tx.send(encode("ERROR", &e.to_status())).await;
            return;
        }
        for o in &initial {
            if tx.send(encode_object("ADDED", o)).await.is_err() {
                return;
            }
        }
        let mut last_rv = start_rv;
        if initial_end_bookmark {
            let _ = tx.send(encode("BOOKMARK", &bookmark(last_rv, true))).await;
        }
        // Translates one change into what this watcher should see (or nothing).
        let translate = |ev: &WatchEvent| -> Option<&'static str> {
            if ev.resource != storage {
                return None;
            }
            let now = keep(&ev.object);
            match ev.kind {
                EventKind::Added => now.then_some("ADDED"),
                EventKind::Deleted => now.then_some("DELETED"),
                EventKind::Modified => {
                    let before = ev.previous.as_ref().is_some_and(|p| keep(p));
                    match (before, now) {
                        (true, true) => Some("MODIFIED"),
                        (false, true) => Some("ADDED"),
                        (true, false) => Some("DELETED"),
                        (false, false) => None,
                    }
                }
            }
        };
        for ev in &backlog {
            last_rv = ev.rv;
            if let Some(ty) = translate(ev)
                && tx.send(encode_event(ty, ev)).await.is_err()
            {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let chaos = tokio::time::sleep(planned_drop.map_or(timeout, |d| d.after));
        tokio::pin!(chaos);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = &mut chaos, if planned_drop.is_some() => {
                    let Some(planned) = planned_drop else { return };
                    tracing::debug!(after_ms = planned.after.as_millis() as u64, how = ?planned.how, "dropping a watch on purpose");
                    match planned.how {
                        DropHow::EndStream => {}
                        DropHow::ResetStream => {
                            let _ = fail_tx.send(());
                        }
                        DropHow::ResetConnection => {
                            // The body fails too, so the response never ends cleanly
                            // before the reset lands (a client would otherwise put the
                            // connection back in its pool and lose its next request).
                            let _ = fail_tx.send(());
                            if let Some(reset) = &conn_reset {
                                reset.cancel();
                            }
                        }
                    }
                    return;
                }
                () = &mut deadline => {
                    if bookmarks {
                        last_rv = store.progress(&sub).map_or(last_rv, |rv| rv.max(last_rv));
                        let _ = tx.send(encode("BOOKMARK", &bookmark(last_rv, false))).await;
                    }
                    return;
                }
                () = tx.closed() => return,
                _ = tick.tick() => {
                    if bookmarks {
                        last_rv = store.progress(&sub).map_or(last_rv, |rv| rv.max(last_rv));
                    }
                    if bookmarks && tx.send(encode("BOOKMARK", &bookmark(last_rv, false))).await.is_err() {
                        return;
                    }
                }
                r = sub.recv() => match r {
                    Ok(ev) => {
                        if ev.rv <= last_rv {
                            continue;
                        }
                        last_rv = ev.rv;
                        if let Some(ty) = translate(&ev)
                            && tx.send(encode_event(ty, &ev)).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Fell behind the fan-out: catch up from the window, or tell the
                        // client to relist if even that is gone.
                        match store.events_after(last_rv) {
                            Ok(evs) => {
                                for ev in evs {
                                    last_rv = ev.rv;
                                    if let Some(ty) = translate(&ev)
                                        && tx.send(encode_event(ty, &ev)).await.is_err()
                                    {
                                        return;
                                    }
                                }
                            }
                            Err(e) => {
                                let _ = tx.send(encode("ERROR", &e.to_status())).await;
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    let mut rx = rx;
    let stream = futures::stream::poll_fn(move |cx| {
        use std::task::Poll;
        match rx.poll_recv(cx) {
            Poll::Ready(Some(b)) => Poll::Ready(Some(Ok(b))),
            // The producer is gone: a clean end, unless it asked for a reset (an error
            // from the body makes hyper reset the HTTP/2 stream or abort the HTTP/1
            // connection mid-chunk).
            Poll::Ready(None) => Poll::Ready(match fail_rx.try_recv() {
                Ok(()) => Some(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "watch dropped on purpose (--drop-watches-every)",
                ))),
                Err(_) => None,
            }),
            Poll::Pending => Poll::Pending,
        }
    });
    let content_type = if as_table {
        "application/json;as=Table;v=v1;g=meta.k8s.io"
    } else {
        "application/json"
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CACHE_CONTROL, "no-cache, private")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| ApiError::internal("building watch response").into_response()))
}

/// How a watch is ended on purpose (see [`AppState::drop_watches_every`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DropHow {
    /// The response ends cleanly, as when a watch's server-side timeout expires.
    EndStream,
    /// The stream is reset (HTTP/2 RST_STREAM; HTTP/1.1 connection aborted mid-chunk).
    ResetStream,
    /// The TCP connection is reset (RST), as when a load balancer or server restarts.
    ResetConnection,
}

/// When and how one watch will be ended on purpose.
#[derive(Debug, Clone, Copy)]
struct WatchDrop {
    after: Duration,
    how: DropHow,
}

impl WatchDrop {
    /// A uniformly random time in (0, every] and the next of the three endings in turn (a
    /// connection reset only when the connection can be reset). The endings take turns
    /// rather than being drawn, so any three watches in a row meet all three: a test of
    /// clients' recovery never depends on luck.
    fn pick(every: Duration, can_reset_connection: bool) -> Self {
        use rand::Rng;
        static NEXT_ENDING: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
        let turn = NEXT_ENDING
            .fetch_update(
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
                |n| Some((n + 1) % 3),
            )
            .unwrap_or(0);
        let max_ms = every.as_millis().max(1) as u64;
        let after = Duration::from_millis(rand::rng().random_range(1..=max_ms));
        let how = match turn {
            0 => DropHow::EndStream,
            1 => DropHow::ResetStream,
            _ if can_reset_connection => DropHow::ResetConnection,
            _ => DropHow::ResetStream,
        };
        Self { after, how }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_drops_are_within_the_bound_and_use_every_ending() {
        let every = Duration::from_millis(50);
        let picks: Vec<WatchDrop> = (0..3).map(|_| WatchDrop::pick(every, true)).collect();
        assert!(
            picks
                .iter()
                .all(|p| p.after > Duration::ZERO && p.after <= every)
        );
        for how in [
            DropHow::EndStream,
            DropHow::ResetStream,
            DropHow::ResetConnection,
        ] {
            assert!(picks.iter().any(|p| p.how == how), "{how:?} never picked");
        }
        assert!((0..3).all(|_| WatchDrop::pick(every, false).how != DropHow::ResetConnection));
        let timings: Vec<WatchDrop> = (0..300).map(|_| WatchDrop::pick(every, true)).collect();
        assert!(
            timings
                .iter()
                .all(|p| p.after > Duration::ZERO && p.after <= every)
        );
    }

    #[test]
    fn routes_parse_like_upstream() {
        let Ok(Route::Resource(t)) = parse_route("/api/v1/namespaces/default/pods/nginx/log")
        else {
            panic!("route")
        };
        assert_eq!(
            (t.res, t.ns.as_deref(), t.name.as_deref(), t.sub.as_deref()),
            (ids::PODS, Some("default"), Some("nginx"), Some("log"))
        );
        let Ok(Route::Resource(t)) = parse_route("/api/v1/namespaces/foo/status") else {
            panic!("route")
        };
        assert_eq!(
            (t.res, t.name.as_deref(), t.sub.as_deref()),
            (ids::NAMESPACES, Some("foo"), Some("status"))
        );
        let Ok(Route::Resource(t)) = parse_route("/api/v1/namespaces/foo") else {
            panic!("route")
        };
        assert_eq!((t.res, t.name.as_deref()), (ids::NAMESPACES, Some("foo")));
        let Ok(Route::Resource(t)) = parse_route("/apis/apps/v1/deployments") else {
            panic!("route")
        };
        assert_eq!(RESOURCES[t.res].kind, "Deployment");
        assert!(parse_route("/api/v1/namespaces/x/nodes").is_err());
        assert!(parse_route("/api/v1/pods/x").is_err());
        assert!(parse_route("/apis/apps/v1/namespaces/d/deployments/x/log").is_err());
        assert!(matches!(parse_route("/api/v1"), Ok(Route::Discovery(_, _))));
    }
}
