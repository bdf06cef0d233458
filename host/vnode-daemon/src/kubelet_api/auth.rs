//! Authentication and authorisation of kubelet API requests, as the kubelet does it:
//!
//! - **Client certificate**: verified against the client CA during the TLS handshake (rustls
//!   rejects any certificate not signed by it); the user is the subject CN, the groups are
//!   the subject O values.
//! - **Bearer token**: a `TokenReview` against the API server (cached 2 min).
//! - **Anonymous**: only with `kubelet.anonymousAuth: true`, as `system:anonymous`.
//!
//! Authorisation is a `SubjectAccessReview` on the Node with a subresource derived from the
//! path (`stats`, `metrics`, `log`, else `proxy`) and a verb from the method (allow cached
//! 5 min, deny 30 s), or `alwaysAllow` for authenticated callers when the API server has no
//! authorization API.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use parking_lot::Mutex;

use crate::config::KubeletAuthorization;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserInfo {
    /// User name.
    pub name: String,
    /// Groups.
    pub groups: Vec<String>,
    /// UID, if the authenticator gave one.
    pub uid: Option<String>,
}

/// The identity proven by the connection's client certificate (verified by rustls against
/// the client CA). `None` when the client sent no certificate.
#[derive(Debug, Clone, Default)]
pub struct PeerIdentity(pub Option<UserInfo>);

impl PeerIdentity {
    /// Reads CN (user) and O (groups) from the leaf certificate.
    pub fn from_certificates(certs: Option<&[rustls_pki_types::CertificateDer<'_>]>) -> Self {
        let Some(leaf) = certs.and_then(|c| c.first()) else {
            return Self(None);
        };
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
            return Self(None);
        };
        let subject = cert.subject();
        let name = subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        let groups = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_string))
            .collect();
        Self(name.map(|name| UserInfo {
            name,
            groups,
            uid: None,
        }))
    }
}

/// What authentication and authorisation read from a request (copied out, so the request
/// body need not be held across the review calls).
#[derive(Debug, Clone)]
pub struct RequestFacts {
    /// HTTP method.
    pub method: http::Method,
    /// URI path.
    pub path: String,
    /// Bearer token, if any.
    pub bearer: Option<String>,
    /// Verified client-certificate identity, if any.
    pub peer: Option<UserInfo>,
}

impl RequestFacts {
    /// Extracts the facts from a request (the [`PeerIdentity`] extension is set per connection).
    pub fn from_request<B>(req: &http::Request<B>) -> Self {
        let bearer = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        let peer = req
            .extensions()
            .get::<PeerIdentity>()
            .and_then(|p| p.0.clone());
        Self {
            method: req.method().clone(),
            path: req.uri().path().to_string(),
            bearer,
            peer,
        }
    }
}

/// What a request asks to do, in SubjectAccessReview terms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attributes {
    /// `get`, `create`, `update`, `patch`, `delete`.
    pub verb: String,
    /// Node name.
    pub node: String,
    /// `stats`, `metrics`, `log`, `proxy`.
    pub subresource: String,
}

impl Attributes {
    /// The kubelet's mapping from method and path to verb and `nodes` subresource.
    pub fn from_request(method: &http::Method, path: &str, node: &str) -> Self {
        let verb = match *method {
            http::Method::POST => "create",
            http::Method::PUT => "update",
            http::Method::PATCH => "patch",
            http::Method::DELETE => "delete",
            _ => "get",
        };
        let subresource = if path.starts_with("/stats") {
            "stats"
        } else if path.starts_with("/metrics") {
            "metrics"
        } else if path.starts_with("/logs") {
            "log"
        } else {
            "proxy"
        };
        Self {
            verb: verb.into(),
            node: node.into(),
            subresource: subresource.into(),
        }
    }
}

/// A refused or failed check; becomes 401, 403 or 503.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// No valid credentials (401).
    #[error("Unauthorized")]
    Unauthenticated,
    /// Authenticated but not allowed (403).
    #[error("Forbidden (user={user}, verb={verb}, resource=nodes, subresource={subresource})")]
    Forbidden {
        /// Who.
        user: String,
        /// What.
        verb: String,
        /// Which subresource.
        subresource: String,
    },
    /// The review API failed (503; fail closed).
    #[error("authentication or authorization backend unavailable: {0}")]
    Backend(String),
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let code = match self {
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::Backend(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (code, self.to_string()).into_response()
    }
}

/// The two review calls, behind a trait so tests need no API server.
pub trait AuthApi: Send + Sync + 'static {
    /// TokenReview: who does this token belong to (None: invalid token).
    fn review_token(
        &self,
        token: &str,
    ) -> impl Future<Output = Result<Option<UserInfo>, AuthError>> + Send;
    /// SubjectAccessReview: may `user` do `attrs`.
    fn review_access(
        &self,
        user: &UserInfo,
        attrs: &Attributes,
    ) -> impl Future<Output = Result<bool, AuthError>> + Send;
}

/// [`AuthApi`] over the Kubernetes `authentication.k8s.io` and `authorization.k8s.io` APIs.
pub struct KubeAuthApi {
    client: kube::Client,
}

impl KubeAuthApi {
    /// Uses `client` (the daemon's identity needs `create` on tokenreviews and subjectaccessreviews).
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

impl AuthApi for KubeAuthApi {
    async fn review_token(&self, token: &str) -> Result<Option<UserInfo>, AuthError> {
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                ..TokenReviewSpec::default()
            },
            ..TokenReview::default()
        };
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| AuthError::Backend(format!("TokenReview: {e}")))?;
        let Some(status) = answer.status else {
            return Ok(None);
        };
        if status.authenticated != Some(true) {
            return Ok(None);
        }
        Ok(status.user.and_then(|u| {
            u.username.map(|name| UserInfo {
                name,
                groups: u.groups.unwrap_or_default(),
                uid: u.uid,
            })
        }))
    }

    async fn review_access(&self, user: &UserInfo, attrs: &Attributes) -> Result<bool, AuthError> {
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                groups: Some(user.groups.clone()),
                uid: user.uid.clone(),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(attrs.verb.clone()),
                    group: Some(String::new()),
                    version: Some("v1".into()),
                    resource: Some("nodes".into()),
                    subresource: Some(attrs.subresource.clone()),
                    name: Some(attrs.node.clone()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| AuthError::Backend(format!("SubjectAccessReview: {e}")))?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }
}

/// A tiny TTL cache; entries expire, nothing else evicts them (the key space is the set of
/// callers of one kubelet, which is small).
struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: std::hash::Hash + Eq, V: Clone> TtlCache<K, V> {
    fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
    fn get(&self, k: &K) -> Option<V> {
        let mut entries = self.entries.lock();
        match entries.get(k) {
            Some((v, until)) if *until > Instant::now() => Some(v.clone()),
            Some(_) => {
                entries.remove(k);
                None
            }
            None => None,
        }
    }
    fn put(&self, k: K, v: V, ttl: Duration) {
        let mut entries = self.entries.lock();
        if entries.len() > 10_000 {
            let now = Instant::now();
            entries.retain(|_, (_, until)| *until > now);
        }
        entries.insert(k, (v, Instant::now() + ttl));
    }
}

const TOKEN_TTL: Duration = Duration::from_secs(120);
const ALLOW_TTL: Duration = Duration::from_secs(300);
const DENY_TTL: Duration = Duration::from_secs(30);

/// Authenticates and authorises kubelet API requests.
pub struct Authenticator<A> {
    api: A,
    anonymous: bool,
    authorization: KubeletAuthorization,
    tokens: TtlCache<String, Option<UserInfo>>,
    decisions: TtlCache<(UserInfo, Attributes), bool>,
}

impl<A: AuthApi> Authenticator<A> {
    /// An authenticator using `api` for reviews.
    pub fn new(api: A, anonymous: bool, authorization: KubeletAuthorization) -> Self {
        Self {
            api,
            anonymous,
            authorization,
            tokens: TtlCache::new(),
            decisions: TtlCache::new(),
        }
    }

    /// Who is calling: client certificate first, then bearer token, then anonymous (if enabled).
    pub async fn authenticate(&self, req: &RequestFacts) -> Result<UserInfo, AuthError> {
        if let Some(user) = &req.peer {
            return Ok(user.clone());
        }
        if let Some(token) = req.bearer.as_deref() {
            let user = match self.tokens.get(&token.to_string()) {
                Some(cached) => cached,
                None => {
                    let user = self.api.review_token(token).await?;
                    self.tokens.put(token.to_string(), user.clone(), TOKEN_TTL);
                    user
                }
            };
            return user.ok_or(AuthError::Unauthenticated);
        }
        if self.anonymous {
            return Ok(UserInfo {
                name: "system:anonymous".into(),
                groups: vec!["system:unauthenticated".into()],
                uid: None,
            });
        }
        Err(AuthError::Unauthenticated)
    }

    /// Authenticates, then authorises the request against `node`.
    pub async fn check(&self, req: &RequestFacts, node: &str) -> Result<(), AuthError> {
        let user = self.authenticate(req).await?;
        let attrs = Attributes::from_request(&req.method, &req.path, node);
        let allowed = match self.authorization {
            KubeletAuthorization::AlwaysAllow => true,
            KubeletAuthorization::Webhook => {
                let key = (user.clone(), attrs.clone());
                match self.decisions.get(&key) {
                    Some(d) => d,
                    None => {
                        let d = self.api.review_access(&user, &attrs).await?;
                        self.decisions
                            .put(key, d, if d { ALLOW_TTL } else { DENY_TTL });
                        d
                    }
                }
            }
        };
        if allowed {
            Ok(())
        } else {
            tracing::info!(user = %user.name, verb = %attrs.verb, subresource = %attrs.subresource, "kubelet API request forbidden");
            Err(AuthError::Forbidden {
                user: user.name,
                verb: attrs.verb,
                subresource: attrs.subresource,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Token "good" is alice; alice may get `proxy` but not `stats`.
    #[derive(Clone, Default)]
    pub(crate) struct FakeReviews {
        pub token_calls: Arc<AtomicUsize>,
        pub access_calls: Arc<AtomicUsize>,
    }

    impl AuthApi for FakeReviews {
        async fn review_token(&self, token: &str) -> Result<Option<UserInfo>, AuthError> {
            self.token_calls.fetch_add(1, Ordering::SeqCst);
            Ok((token == "good").then(|| UserInfo {
                name: "alice".into(),
                groups: vec![],
                uid: None,
            }))
        }
        async fn review_access(
            &self,
            user: &UserInfo,
            attrs: &Attributes,
        ) -> Result<bool, AuthError> {
            self.access_calls.fetch_add(1, Ordering::SeqCst);
            Ok(match user.name.as_str() {
                "alice" => attrs.subresource == "proxy",
                "kube-apiserver-kubelet-client" => true,
                _ => false,
            })
        }
    }

    fn req(path: &str, bearer: Option<&str>, peer: Option<&str>) -> RequestFacts {
        RequestFacts::from_request(&raw_req(path, bearer, peer))
    }

    fn raw_req(path: &str, bearer: Option<&str>, peer: Option<&str>) -> http::Request<()> {
        let mut b = http::Request::get(path);
        if let Some(t) = bearer {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let mut r = b.body(()).expect("request");
        r.extensions_mut()
            .insert(PeerIdentity(peer.map(|n| UserInfo {
                name: n.into(),
                groups: vec!["system:masters".into()],
                uid: None,
            })));
        r
    }

    #[tokio::test]
    async fn anonymous_is_refused_unless_enabled() {
        let auth = Authenticator::new(FakeReviews::default(), false, KubeletAuthorization::Webhook);
        assert!(matches!(
            auth.check(&req("/pods", None, None), "n").await,
            Err(AuthError::Unauthenticated)
        ));
        let auth = Authenticator::new(
            FakeReviews::default(),
            true,
            KubeletAuthorization::AlwaysAllow,
        );
        assert!(auth.check(&req("/pods", None, None), "n").await.is_ok());
        // Enabled anonymous access is still subject to authorisation in webhook mode.
        let auth = Authenticator::new(FakeReviews::default(), true, KubeletAuthorization::Webhook);
        assert!(matches!(
            auth.check(&req("/pods", None, None), "n").await,
            Err(AuthError::Forbidden { .. })
        ));
    }

    #[tokio::test]
    async fn tokens_are_reviewed_and_decisions_cached() {
        let reviews = FakeReviews::default();
        let auth = Authenticator::new(reviews.clone(), false, KubeletAuthorization::Webhook);
        assert!(
            auth.check(&req("/pods", Some("good"), None), "n")
                .await
                .is_ok()
        );
        assert!(
            auth.check(&req("/pods", Some("good"), None), "n")
                .await
                .is_ok()
        );
        assert_eq!(reviews.token_calls.load(Ordering::SeqCst), 1);
        assert_eq!(reviews.access_calls.load(Ordering::SeqCst), 1);
        let e = auth
            .check(&req("/stats/summary", Some("good"), None), "n")
            .await
            .expect_err("stats denied");
        assert!(e.to_string().contains("subresource=stats"), "{e}");
        assert!(matches!(
            auth.check(&req("/pods", Some("bad"), None), "n").await,
            Err(AuthError::Unauthenticated)
        ));
    }

    #[tokio::test]
    async fn client_certificate_identity_wins() {
        let auth = Authenticator::new(FakeReviews::default(), false, KubeletAuthorization::Webhook);
        assert!(
            auth.check(
                &req(
                    "/stats/summary",
                    Some("bad"),
                    Some("kube-apiserver-kubelet-client")
                ),
                "n"
            )
            .await
            .is_ok()
        );
    }

    #[test]
    fn attributes_follow_the_kubelet_mapping() {
        let a = |m: http::Method, p: &str| {
            let x = Attributes::from_request(&m, p, "vk");
            (x.verb, x.subresource)
        };
        assert_eq!(
            a(http::Method::GET, "/stats/summary"),
            ("get".into(), "stats".into())
        );
        assert_eq!(
            a(http::Method::GET, "/metrics/resource"),
            ("get".into(), "metrics".into())
        );
        assert_eq!(
            a(http::Method::GET, "/containerLogs/a/b/c"),
            ("get".into(), "proxy".into())
        );
        assert_eq!(
            a(http::Method::POST, "/exec/a/b/c"),
            ("create".into(), "proxy".into())
        );
    }
}
