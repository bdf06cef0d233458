//! The async ECI client: configuration, signing, pacing, retries, one method per action.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::action::Action;
use crate::error::EciError;
use crate::model::*;
use crate::wire::{self, params::to_params, sign};

/// Environment variable that overrides the endpoint (`http://127.0.0.1:8080` or a bare host).
pub const ENDPOINT_ENV: &str = "ECI_ENDPOINT";
/// Environment variable with the access key id.
pub const ACCESS_KEY_ENV: &str = "ECI_ACCESS_KEY";
/// Environment variable with the access key secret.
pub const SECRET_KEY_ENV: &str = "ECI_SECRET_KEY";

/// An AccessKey pair. The secret is held in a [`SecretString`]: it is redacted in `Debug`
/// and never written to logs or errors.
#[derive(Clone)]
pub struct Credentials {
    /// AccessKey id (not secret; it is sent with every request).
    pub access_key_id: String,
    /// AccessKey secret.
    pub access_key_secret: SecretString,
    /// STS security token, for temporary credentials.
    pub security_token: Option<SecretString>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"<redacted>")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Credentials {
    /// A key pair from its two parts.
    pub fn new(access_key_id: impl Into<String>, access_key_secret: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            access_key_secret: SecretString::from(access_key_secret.into()),
            security_token: None,
        }
    }

    /// Reads `ECI_ACCESS_KEY` and `ECI_SECRET_KEY`.
    pub fn from_env() -> Result<Self, EciError> {
        let id = std::env::var(ACCESS_KEY_ENV)
            .map_err(|_| EciError::Config(format!("{ACCESS_KEY_ENV} is not set")))?;
        let secret = std::env::var(SECRET_KEY_ENV)
            .map_err(|_| EciError::Config(format!("{SECRET_KEY_ENV} is not set")))?;
        Ok(Self::new(id, secret))
    }

    /// Reads a credentials file of `KEY=VALUE` lines with `ECI_ACCESS_KEY` and
    /// `ECI_SECRET_KEY` (blank lines and `#` comments ignored; values may be quoted).
    pub fn from_file(path: &Path) -> Result<Self, EciError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            EciError::Config(format!("reading credentials file {}: {e}", path.display()))
        })?;
        let (mut id, mut secret) = (None, None);
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"').trim_matches('\'').to_string();
            match k.trim().trim_start_matches("export ").trim() {
                ACCESS_KEY_ENV => id = Some(v),
                SECRET_KEY_ENV => secret = Some(v),
                _ => {}
            }
        }
        match (id, secret) {
            (Some(id), Some(secret)) => Ok(Self::new(id, secret)),
            _ => Err(EciError::Config(format!(
                "credentials file {} must set {ACCESS_KEY_ENV} and {SECRET_KEY_ENV}",
                path.display()
            ))),
        }
    }
}

/// Which signature scheme to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignatureVersion {
    /// `ACS3-HMAC-SHA256` header signature (what current SDKs send).
    #[default]
    V3,
    /// `HMAC-SHA1` query signature (`SignatureVersion=1.0`, legacy SDKs).
    V1,
}

/// Retry policy for throttling, 5xx and transport failures.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = no retries).
    pub max_retries: usize,
    /// First back-off.
    pub initial_backoff: Duration,
    /// Cap on a single back-off.
    pub max_backoff: Duration,
    /// Randomise back-offs so synchronized clients spread out.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }
}

/// Client-side pacing: calls per minute per action (`None` = unlimited).
#[derive(Debug, Clone)]
pub struct RateLimits {
    per_minute: HashMap<Action, Option<NonZeroU32>>,
}

impl Default for RateLimits {
    /// The documented ECI quotas, so bursts are paced rather than throttled.
    fn default() -> Self {
        Self::documented()
    }
}

impl RateLimits {
    /// The documented per-minute quotas (see [`Action::documented_quota_per_minute`]).
    pub fn documented() -> Self {
        let per_minute = Action::ALL
            .into_iter()
            .map(|a| (a, NonZeroU32::new(a.documented_quota_per_minute())))
            .collect();
        Self { per_minute }
    }

    /// No pacing (e.g. against an emulator with quotas lifted, or a raised account quota).
    pub fn unlimited() -> Self {
        Self {
            per_minute: Action::ALL.into_iter().map(|a| (a, None)).collect(),
        }
    }

    /// Sets one action's limit (`None` lifts it).
    pub fn set(mut self, action: Action, per_minute: Option<u32>) -> Self {
        self.per_minute
            .insert(action, per_minute.and_then(NonZeroU32::new));
        self
    }

    /// The limit for an action.
    pub fn get(&self, action: Action) -> Option<u32> {
        self.per_minute
            .get(&action)
            .copied()
            .flatten()
            .map(NonZeroU32::get)
    }
}

/// Everything [`EciClient::new`] needs.
#[derive(Debug, Clone)]
pub struct EciClientConfig {
    /// Region, e.g. `cn-hangzhou`; sent as `RegionId` on every call.
    pub region_id: String,
    /// Endpoint: `https://host`, `http://127.0.0.1:8080` or a bare `host[:port]` (HTTPS).
    /// `None` = `eci.<region>.aliyuncs.com`.
    pub endpoint: Option<String>,
    /// The key pair.
    pub credentials: Credentials,
    /// Signature scheme.
    pub signature_version: SignatureVersion,
    /// Retries.
    pub retry: RetryPolicy,
    /// Client-side pacing.
    pub rate_limits: RateLimits,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
}

impl EciClientConfig {
    /// Defaults for `region_id`, with the endpoint taken from `ECI_ENDPOINT` if set.
    pub fn new(region_id: impl Into<String>, credentials: Credentials) -> Self {
        Self {
            region_id: region_id.into(),
            endpoint: std::env::var(ENDPOINT_ENV)
                .ok()
                .filter(|s| !s.trim().is_empty()),
            credentials,
            signature_version: SignatureVersion::V3,
            retry: RetryPolicy::default(),
            rate_limits: RateLimits::documented(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The ECI client. Cheap to clone; clones share the connection pool and rate limiters.
#[derive(Clone)]
pub struct EciClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: url::Url,
    host_header: String,
    region_id: String,
    credentials: Credentials,
    signature_version: SignatureVersion,
    retry: RetryPolicy,
    limiters: HashMap<Action, DefaultDirectRateLimiter>,
}

impl std::fmt::Debug for EciClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EciClient")
            .field("endpoint", &self.inner.base.as_str())
            .field("region_id", &self.inner.region_id)
            .field("credentials", &self.inner.credentials)
            .field("signature_version", &self.inner.signature_version)
            .finish()
    }
}

/// The pacing for a quota of `per_minute` calls: at most `per_minute` calls in any 60 s.
///
/// governor's `Quota::per_minute(n)` is a bucket of n that refills at n per minute, so a
/// client starting full may send n at once and n more within the minute: up to 2n in one
/// 60 s window (a 10,000-group sweep's 500 pages went out at once and the describes of
/// changed groups kept going at the full rate), which a quota counted per minute throttles.
/// Here the bucket holds a twentieth of the quota (3 s worth, at least 1) and refills at the
/// rest, so a burst plus a minute of refill is the quota.
fn window_quota(per_minute: NonZeroU32) -> Quota {
    let n = per_minute.get();
    let burst = (n / 20).max(1);
    let refill = (n - burst).max(1);
    let period = Duration::from_secs(60) / refill;
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_minute(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
}

/// The ClientToken for creating the container group of a pod: deterministic in the pod UID
/// (and a re-creation `attempt`, 0 for the first), ≤64 ASCII characters. A retried create
/// after a timeout carries the same token, so ECI returns the group it already made instead
/// of making a second one.
pub fn client_token_for_pod(pod_uid: &str, attempt: u32) -> String {
    let base = if !pod_uid.is_empty()
        && pod_uid.len() <= 48
        && pod_uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        pod_uid.to_string()
    } else {
        // Not a Kubernetes UID: derive a stable, short, ASCII token from it.
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, pod_uid.as_bytes()).to_string()
    };
    if attempt == 0 {
        format!("vnode-{base}")
    } else {
        format!("vnode-{base}-{attempt}")
    }
}

impl EciClient {
    /// Builds a client. Fails on a malformed endpoint.
    pub fn new(config: EciClientConfig) -> Result<Self, EciError> {
        let endpoint = config
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("eci.{}.aliyuncs.com", config.region_id));
        let with_scheme = if endpoint.contains("://") {
            endpoint.clone()
        } else {
            format!("https://{endpoint}")
        };
        let mut base = url::Url::parse(&with_scheme)
            .map_err(|e| EciError::Config(format!("invalid ECI endpoint {endpoint:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(EciError::Config(format!(
                "ECI endpoint {endpoint:?} must be http or https"
            )));
        }
        base.set_path("/");
        base.set_query(None);
        let host = base
            .host_str()
            .ok_or_else(|| EciError::Config(format!("ECI endpoint {endpoint:?} has no host")))?;
        let host_header = match base.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        // reqwest is built without a bundled crypto provider; make sure one exists (no-op if
        // the binary already installed it).
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .no_proxy()
            .build()
            .map_err(|e| EciError::Config(format!("building HTTP client: {}", e.without_url())))?;
        let limiters = Action::ALL
            .into_iter()
            .filter_map(|a| {
                let n = NonZeroU32::new(config.rate_limits.get(a)?)?;
                Some((a, RateLimiter::direct(window_quota(n))))
            })
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base,
                host_header,
                region_id: config.region_id,
                credentials: config.credentials,
                signature_version: config.signature_version,
                retry: config.retry,
                limiters,
            }),
        })
    }

    /// The endpoint URL in use.
    pub fn endpoint(&self) -> &str {
        self.inner.base.as_str()
    }

    /// The region sent as `RegionId`.
    pub fn region_id(&self) -> &str {
        &self.inner.region_id
    }

    /// `CreateContainerGroup`. Set `client_token` (see [`client_token_for_pod`]) so retries
    /// are idempotent; a create without one is retried only on throttling, never after a
    /// timeout or 5xx (which could leave a duplicate group).
    pub async fn create_container_group(
        &self,
        request: &CreateContainerGroupRequest,
    ) -> Result<CreateContainerGroupResponse, EciError> {
        let idempotent = request.client_token.is_some();
        let result = self
            .call(
                Action::CreateContainerGroup,
                request,
                &request.extra,
                idempotent,
            )
            .await;
        result.map_err(|e| match e {
            EciError::NoStock {
                zone,
                spec,
                code,
                message,
                request_id,
            } => EciError::NoStock {
                zone: zone.or_else(|| request.zone_id.clone()),
                spec: spec.or_else(|| requested_spec(request)),
                code,
                message,
                request_id,
            },
            other => other,
        })
    }

    /// `DescribeContainerGroups`: one page.
    pub async fn describe_container_groups(
        &self,
        request: &DescribeContainerGroupsRequest,
    ) -> Result<DescribeContainerGroupsResponse, EciError> {
        self.call(Action::DescribeContainerGroups, request, &[], true)
            .await
    }

    /// `DescribeContainerGroups`, following `NextToken` to the last page. Fails as a whole
    /// if any page fails: a partial listing is never returned as if complete.
    pub async fn describe_all_container_groups(
        &self,
        request: &DescribeContainerGroupsRequest,
    ) -> Result<Vec<ContainerGroup>, EciError> {
        let mut page = request.clone();
        let mut all = Vec::new();
        loop {
            let resp = self.describe_container_groups(&page).await?;
            all.extend(resp.container_groups);
            if resp.next_token.is_empty() {
                return Ok(all);
            }
            page.next_token = Some(resp.next_token);
        }
    }

    /// `DescribeContainerGroupStatus`: one page.
    pub async fn describe_container_group_status(
        &self,
        request: &DescribeContainerGroupStatusRequest,
    ) -> Result<DescribeContainerGroupStatusResponse, EciError> {
        self.call(Action::DescribeContainerGroupStatus, request, &[], true)
            .await
    }

    /// `DescribeContainerGroupStatus` for any number of ids: batches of 20 (the API limit),
    /// each followed to its last page.
    pub async fn describe_container_group_status_by_ids(
        &self,
        ids: &[String],
        since_second: Option<i64>,
    ) -> Result<Vec<ContainerGroupStatusInfo>, EciError> {
        let mut all = Vec::new();
        for chunk in ids.chunks(20) {
            let mut req = DescribeContainerGroupStatusRequest {
                container_group_ids: chunk.to_vec(),
                since_second,
                ..Default::default()
            };
            loop {
                let resp = self.describe_container_group_status(&req).await?;
                all.extend(resp.data);
                if resp.next_token.is_empty() {
                    break;
                }
                req.next_token = Some(resp.next_token);
            }
        }
        Ok(all)
    }

    /// `DeleteContainerGroup`.
    pub async fn delete_container_group(
        &self,
        request: &DeleteContainerGroupRequest,
    ) -> Result<RequestIdResponse, EciError> {
        self.call(Action::DeleteContainerGroup, request, &[], true)
            .await
    }

    /// `DescribeContainerLog`.
    pub async fn describe_container_log(
        &self,
        request: &DescribeContainerLogRequest,
    ) -> Result<DescribeContainerLogResponse, EciError> {
        self.call(Action::DescribeContainerLog, request, &[], true)
            .await
    }

    /// `ExecContainerCommand`: returns the WebSocket URL to run the command on.
    pub async fn exec_container_command(
        &self,
        request: &ExecContainerCommandRequest,
    ) -> Result<ExecContainerCommandResponse, EciError> {
        self.call(Action::ExecContainerCommand, request, &[], false)
            .await
    }

    /// `DescribeContainerGroupMetric`.
    pub async fn describe_container_group_metric(
        &self,
        request: &DescribeContainerGroupMetricRequest,
    ) -> Result<DescribeContainerGroupMetricResponse, EciError> {
        self.call(Action::DescribeContainerGroupMetric, request, &[], true)
            .await
    }

    /// `UpdateContainerGroup`.
    pub async fn update_container_group(
        &self,
        request: &UpdateContainerGroupRequest,
    ) -> Result<RequestIdResponse, EciError> {
        let idempotent = request.client_token.is_some();
        self.call(Action::UpdateContainerGroup, request, &[], idempotent)
            .await
    }

    /// `RestartContainerGroup`.
    pub async fn restart_container_group(
        &self,
        request: &RestartContainerGroupRequest,
    ) -> Result<RequestIdResponse, EciError> {
        let idempotent = request.client_token.is_some();
        self.call(Action::RestartContainerGroup, request, &[], idempotent)
            .await
    }

    /// `DescribeContainerGroupPrice`.
    pub async fn describe_container_group_price(
        &self,
        request: &DescribeContainerGroupPriceRequest,
    ) -> Result<DescribeContainerGroupPriceResponse, EciError> {
        self.call(Action::DescribeContainerGroupPrice, request, &[], true)
            .await
    }

    /// Flattens, then runs attempts with pacing and retries. `idempotent` says whether a
    /// timeout or 5xx may be retried (the server may have acted on the first attempt).
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        action: Action,
        request: &Req,
        extra: &[(String, String)],
        idempotent: bool,
    ) -> Result<Resp, EciError> {
        let mut params = to_params(request).map_err(|e| EciError::InvalidParameter {
            code: "InvalidParameter".into(),
            message: e.to_string(),
            request_id: String::new(),
        })?;
        params.extend(extra.iter().cloned());
        params.push(("RegionId".into(), self.inner.region_id.clone()));
        let params = Arc::new(params);
        let policy = &self.inner.retry;
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(policy.initial_backoff)
            .with_max_delay(policy.max_backoff)
            .with_max_times(policy.max_retries);
        if policy.jitter {
            backoff = backoff.with_jitter();
        }
        (|| {
            let params = Arc::clone(&params);
            async move { self.attempt(action, &params).await }
        })
        .retry(backoff)
        .when(|e: &EciError| match e {
            EciError::Throttled { .. } => true,
            EciError::Server { .. } | EciError::Transport { .. } => idempotent,
            _ => false,
        })
        .adjust(|e: &EciError, d: Option<Duration>| match (e.retry_after(), d) {
            (Some(ra), Some(d)) => Some(d.max(ra)),
            (_, d) => d,
        })
        .notify(|e: &EciError, d: Duration| {
            tracing::debug!(action = action.as_str(), error = %e, backoff_ms = d.as_millis() as u64, "retrying ECI call");
        })
        .await
    }

    async fn attempt<Resp: DeserializeOwned>(
        &self,
        action: Action,
        params: &[(String, String)],
    ) -> Result<Resp, EciError> {
        if let Some(limiter) = self.inner.limiters.get(&action) {
            limiter.until_ready().await;
        }
        let inner = &*self.inner;
        let now = wire::format_timestamp(jiff::Timestamp::now());
        let nonce = wire::new_nonce();
        let secret = inner.credentials.access_key_secret.expose_secret();
        let mut url = inner.base.clone();
        let mut builder;
        match inner.signature_version {
            SignatureVersion::V3 => {
                // Built once: it is both the URL's query and part of what is signed.
                let query = wire::canonical_query(params);
                url.set_query(Some(query.as_str()).filter(|q| !q.is_empty()));
                let mut headers: Vec<(String, String)> = vec![
                    ("host".into(), inner.host_header.clone()),
                    ("x-acs-action".into(), action.as_str().into()),
                    ("x-acs-version".into(), wire::API_VERSION.into()),
                    ("x-acs-date".into(), now),
                    ("x-acs-signature-nonce".into(), nonce),
                    (
                        "x-acs-content-sha256".into(),
                        wire::EMPTY_BODY_SHA256.into(),
                    ),
                ];
                if let Some(token) = &inner.credentials.security_token {
                    headers.push((
                        "x-acs-security-token".into(),
                        token.expose_secret().to_string(),
                    ));
                }
                let v3 = sign::V3Request {
                    method: "POST",
                    path: "/",
                    query: params,
                    headers: &headers,
                    payload_sha256: wire::EMPTY_BODY_SHA256,
                };
                let authorization =
                    v3.authorization_with(&query, &inner.credentials.access_key_id, secret);
                builder = inner.http.post(url);
                for (k, v) in headers.iter().filter(|(k, _)| k != "host") {
                    builder = builder.header(k.as_str(), v.as_str());
                }
                builder = builder
                    .header("authorization", authorization)
                    .header("accept", "application/json");
            }
            SignatureVersion::V1 => {
                let mut all: Vec<(String, String)> = params.to_vec();
                all.extend([
                    ("Action".to_string(), action.as_str().to_string()),
                    ("Version".into(), wire::API_VERSION.into()),
                    ("Format".into(), "JSON".into()),
                    (
                        "AccessKeyId".into(),
                        inner.credentials.access_key_id.clone(),
                    ),
                    ("SignatureMethod".into(), "HMAC-SHA1".into()),
                    ("SignatureVersion".into(), "1.0".into()),
                    ("SignatureNonce".into(), nonce),
                    ("Timestamp".into(), now),
                ]);
                if let Some(token) = &inner.credentials.security_token {
                    all.push(("SecurityToken".into(), token.expose_secret().to_string()));
                }
                let signature = sign::v1_signature(secret, &sign::v1_string_to_sign("POST", &all));
                all.push(("Signature".into(), signature));
                url.set_query(Some(&wire::canonical_query(&all)));
                builder = inner.http.post(url).header("accept", "application/json");
            }
        }
        let response = builder.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("x-acs-retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis);
        let header_request_id = response
            .headers()
            .get("x-acs-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = response.bytes().await.map_err(transport_error)?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&body).map_err(|e| EciError::Decode {
                message: format!("{} response: {e}", action.as_str()),
                request_id: header_request_id,
            });
        }
        let envelope: ErrorEnvelope =
            serde_json::from_slice(&body).map_err(|e| EciError::Decode {
                message: format!("HTTP {status} without an ECI error envelope: {e}"),
                request_id: header_request_id.clone(),
            })?;
        let request_id = if envelope.request_id.is_empty() {
            header_request_id
        } else {
            envelope.request_id
        };
        let err = EciError::from_response(
            status,
            envelope.code,
            envelope.message,
            request_id,
            retry_after,
        );
        tracing::debug!(action = action.as_str(), status, error = %err, "ECI call failed");
        Err(err)
    }
}

fn transport_error(e: reqwest::Error) -> EciError {
    let timeout = e.is_timeout();
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    EciError::Transport { message, timeout }
}

/// `2.0-4.0Gi` or the instance types, for NoStock errors.
fn requested_spec(request: &CreateContainerGroupRequest) -> Option<String> {
    if !request.instance_types.is_empty() {
        return Some(request.instance_types.join(","));
    }
    match (request.cpu, request.memory) {
        (Some(c), Some(m)) => Some(format!("{c:.1}-{m:.1}Gi")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_are_stable_and_short() {
        let uid = "6f1d2c3b-1a2b-4c5d-8e9f-0123456789ab";
        assert_eq!(client_token_for_pod(uid, 0), client_token_for_pod(uid, 0));
        assert_ne!(client_token_for_pod(uid, 0), client_token_for_pod(uid, 1));
        assert!(client_token_for_pod(uid, 7).len() <= 64);
        let odd = "x".repeat(200);
        assert!(client_token_for_pod(&odd, 0).len() <= 64);
        assert!(client_token_for_pod(&odd, 0).is_ascii());
    }

    /// Takes every call the pacing allows, 1 ms at a time over `seconds` of a fake clock;
    /// returns the milliseconds at which calls went out.
    fn paced_calls(per_minute: u32, seconds: u64) -> Vec<u64> {
        let clock = governor::clock::FakeRelativeClock::default();
        let per_minute = NonZeroU32::new(per_minute).expect("positive");
        let limiter = RateLimiter::direct_with_clock(window_quota(per_minute), clock.clone());
        let mut sent = Vec::new();
        for ms in 0..seconds * 1000 {
            while limiter.check().is_ok() {
                sent.push(ms);
            }
            clock.advance(Duration::from_millis(1));
        }
        sent
    }

    /// The most calls in any 60 s window (`[t, t + 60 s)`).
    fn busiest_minute(sent: &[u64]) -> usize {
        let mut most = 0;
        let mut start = 0;
        for end in 0..sent.len() {
            while sent[end] - sent[start] >= 60_000 {
                start += 1;
            }
            most = most.max(end - start + 1);
        }
        most
    }

    #[test]
    fn pacing_keeps_every_minute_within_the_quota_and_uses_most_of_it() {
        for quota in [1u32, 7, 500, 1000, 2000] {
            let sent = paced_calls(quota, 240);
            let busiest = busiest_minute(&sent);
            assert!(
                busiest <= quota as usize,
                "{quota}/min: {busiest} in one minute"
            );
            // Flat out for four minutes: at least 90 % of the quota on average.
            let per_minute = sent.len() as f64 / 4.0;
            assert!(
                per_minute >= 0.9 * f64::from(quota) - 1.0,
                "{quota}/min: only {per_minute}/min"
            );
        }
        // What governor's per-minute quota alone allows: twice the quota in the first minute.
        let clock = governor::clock::FakeRelativeClock::default();
        let lenient = RateLimiter::direct_with_clock(
            Quota::per_minute(NonZeroU32::new(2000).expect("2000")),
            clock.clone(),
        );
        let mut first_minute = 0;
        for _ in 0..60_000 {
            while lenient.check().is_ok() {
                first_minute += 1;
            }
            clock.advance(Duration::from_millis(1));
        }
        assert!(first_minute > 2000 + 1900, "{first_minute}");
    }

    #[test]
    fn secrets_never_in_debug() {
        let creds = Credentials::new("AKID", "super-secret-value");
        let client = EciClient::new(EciClientConfig {
            endpoint: Some("http://127.0.0.1:1".into()),
            ..EciClientConfig::new("cn-hangzhou", creds.clone())
        })
        .expect("valid config");
        assert!(!format!("{creds:?}").contains("super-secret-value"));
        assert!(!format!("{client:?}").contains("super-secret-value"));
        assert_eq!(client.endpoint(), "http://127.0.0.1:1/");
    }

    #[test]
    fn endpoint_defaults_from_region_and_rejects_garbage() {
        let creds = Credentials::new("a", "b");
        let c = EciClient::new(EciClientConfig {
            endpoint: None,
            ..EciClientConfig::new("cn-shanghai", creds.clone())
        })
        .expect("valid");
        assert_eq!(c.endpoint(), "https://eci.cn-shanghai.aliyuncs.com/");
        let bad = EciClient::new(EciClientConfig {
            endpoint: Some("ftp://x".into()),
            ..EciClientConfig::new("cn-shanghai", creds)
        });
        assert!(matches!(bad, Err(EciError::Config(_))));
    }

    #[test]
    fn credentials_file() {
        let dir = std::env::temp_dir().join(format!("vnode-eci-creds-{}", std::process::id()));
        std::fs::write(
            &dir,
            "# comment\nECI_ACCESS_KEY=abc\nexport ECI_SECRET_KEY=\"s3cr3t\"\n",
        )
        .expect("write");
        let c = Credentials::from_file(&dir).expect("parses");
        assert_eq!(c.access_key_id, "abc");
        assert_eq!(c.access_key_secret.expose_secret(), "s3cr3t");
        std::fs::write(&dir, "ECI_ACCESS_KEY=abc\n").expect("write");
        assert!(Credentials::from_file(&dir).is_err());
        let _ = std::fs::remove_file(&dir);
    }
}
