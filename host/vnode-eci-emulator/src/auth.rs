//! Request authentication: both signature schemes, clock skew and nonce replay.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use vnode_eci::wire::{self, sign};

use crate::api::ApiError;

/// How far `Timestamp`/`x-acs-date` may be from the emulator's clock, and how long nonces
/// are remembered.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(15 * 60);

/// What the request handler extracted from the HTTP request.
pub struct Incoming<'a> {
    /// `GET` / `POST`.
    pub method: &'a str,
    /// Path.
    pub path: &'a str,
    /// Decoded query parameters.
    pub query: &'a [(String, String)],
    /// Decoded form-body parameters.
    pub form: &'a [(String, String)],
    /// Headers as (lower-case name, value).
    pub headers: &'a [(String, String)],
    /// Raw body.
    pub body: &'a [u8],
}

impl Incoming<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .chain(self.form.iter())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Which scheme a request was signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// ACS3-HMAC-SHA256.
    V3,
    /// HMAC-SHA1 query signature.
    V1,
}

/// Verifies signatures against the configured key pairs.
pub struct Authenticator {
    keys: HashMap<String, String>,
    nonces: Mutex<NonceCache>,
}

#[derive(Default)]
struct NonceCache {
    seen: HashMap<String, jiff::Timestamp>,
    last_prune: Option<jiff::Timestamp>,
}

impl Authenticator {
    /// An authenticator accepting the given (id, secret) pairs.
    pub fn new(keys: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            keys: keys.into_iter().collect(),
            nonces: Mutex::new(NonceCache::default()),
        }
    }

    /// Verifies the request; returns the scheme it used.
    pub fn verify(&self, req: &Incoming<'_>) -> Result<Scheme, ApiError> {
        if let Some(authz) = req
            .header("authorization")
            .filter(|a| a.trim_start().starts_with("ACS3-"))
        {
            self.verify_v3(req, authz)?;
            Ok(Scheme::V3)
        } else if req.param("Signature").is_some() {
            self.verify_v1(req)?;
            Ok(Scheme::V1)
        } else {
            Err(ApiError::new(
                400,
                "IncompleteSignature",
                "The request signature does not conform to Aliyun standards.",
            ))
        }
    }

    fn secret(&self, access_key_id: &str) -> Result<&str, ApiError> {
        self.keys
            .get(access_key_id)
            .map(String::as_str)
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    "InvalidAccessKeyId.NotFound",
                    "Specified access key is not found.",
                )
            })
    }

    /// Checks the timestamp and that a nonce is present (before the signature is checked).
    fn check_time(&self, timestamp: Option<&str>, nonce: Option<&str>) -> Result<(), ApiError> {
        let Some(ts) = timestamp else {
            return Err(ApiError::missing("Timestamp"));
        };
        let Some(t) = wire::parse_timestamp(ts) else {
            return Err(ApiError::new(
                400,
                "InvalidTimeStamp.Format",
                "Specified time stamp or date value is not well formatted.",
            ));
        };
        let now = jiff::Timestamp::now();
        let skew = (now.as_second() - t.as_second()).unsigned_abs();
        if skew > REPLAY_WINDOW.as_secs() {
            return Err(ApiError::new(
                400,
                "InvalidTimeStamp.Expired",
                "Specified time stamp or date value is expired.",
            ));
        }
        if nonce.is_none_or(str::is_empty) {
            return Err(ApiError::missing("SignatureNonce"));
        }
        Ok(())
    }

    /// Records a nonce of a correctly signed request; a second use within the window fails.
    /// Only signed requests consume nonces, so a forged request cannot burn a real one.
    fn record_nonce(&self, nonce: &str) -> Result<(), ApiError> {
        let now = jiff::Timestamp::now();
        let mut cache = self.nonces.lock();
        let window = jiff::SignedDuration::from_secs(REPLAY_WINDOW.as_secs() as i64);
        if cache
            .last_prune
            .is_none_or(|p| now.duration_since(p) > jiff::SignedDuration::from_secs(30))
        {
            let cutoff = now - window;
            cache.seen.retain(|_, seen| *seen > cutoff);
            cache.last_prune = Some(now);
        }
        if cache.seen.insert(nonce.to_string(), now).is_some() {
            return Err(ApiError::new(
                400,
                "SignatureNonceUsed",
                "Specified signature nonce was used already.",
            ));
        }
        Ok(())
    }

    fn verify_v3(&self, req: &Incoming<'_>, authz: &str) -> Result<(), ApiError> {
        let incomplete = || {
            ApiError::new(
                400,
                "IncompleteSignature",
                "The request signature does not conform to Aliyun standards.",
            )
        };
        if !authz.trim_start().starts_with(sign::V3_ALGORITHM) {
            return Err(incomplete());
        }
        let parsed = sign::parse_v3_authorization(authz).ok_or_else(incomplete)?;
        let secret = self.secret(&parsed.credential)?;
        for required in [
            "host",
            "x-acs-date",
            "x-acs-signature-nonce",
            "x-acs-action",
        ] {
            if !parsed.signed_headers.iter().any(|h| h == required) {
                return Err(ApiError::new(
                    400,
                    "IncompleteSignature",
                    format!(
                        "The request signature does not conform to Aliyun standards: header {required} must be signed."
                    ),
                ));
            }
        }
        let body_hash = sign::sha256_hex(req.body);
        let declared = req.header("x-acs-content-sha256").unwrap_or_default();
        if !declared.eq_ignore_ascii_case(&body_hash) {
            return Err(ApiError::new(
                400,
                "SignatureDoesNotMatch",
                "Specified signature does not match our calculation: x-acs-content-sha256 does not match the body.",
            ));
        }
        self.check_time(
            req.header("x-acs-date"),
            req.header("x-acs-signature-nonce"),
        )?;
        let mut signed: Vec<(String, String)> = Vec::with_capacity(parsed.signed_headers.len());
        for name in &parsed.signed_headers {
            let values: Vec<&(String, String)> =
                req.headers.iter().filter(|(k, _)| k == name).collect();
            if values.is_empty() {
                return Err(incomplete());
            }
            signed.extend(values.into_iter().cloned());
        }
        let v3 = sign::V3Request {
            method: req.method,
            path: req.path,
            query: req.query,
            headers: &signed,
            payload_sha256: declared,
        };
        let expected = v3.signature(secret);
        if !sign::signatures_equal(&expected, &parsed.signature) {
            let canonical = v3.canonical_request();
            return Err(ApiError::new(
                400,
                "SignatureDoesNotMatch",
                format!(
                    "Specified signature does not match our calculation. server StringToSign is [{}] server CanonicalRequest is [{}]",
                    v3.string_to_sign(),
                    canonical
                ),
            ));
        }
        self.record_nonce(req.header("x-acs-signature-nonce").unwrap_or_default())
    }

    fn verify_v1(&self, req: &Incoming<'_>) -> Result<(), ApiError> {
        let access_key_id = req
            .param("AccessKeyId")
            .ok_or_else(|| ApiError::missing("AccessKeyId"))?;
        let secret = self.secret(access_key_id)?;
        match req.param("SignatureMethod") {
            Some("HMAC-SHA1") => {}
            Some(_) => return Err(ApiError::invalid_value("SignatureMethod")),
            None => return Err(ApiError::missing("SignatureMethod")),
        }
        match req.param("SignatureVersion") {
            Some("1.0") => {}
            Some(_) => return Err(ApiError::invalid_value("SignatureVersion")),
            None => return Err(ApiError::missing("SignatureVersion")),
        }
        self.check_time(req.param("Timestamp"), req.param("SignatureNonce"))?;
        let given = req.param("Signature").unwrap_or_default();
        let params: Vec<(String, String)> = req
            .query
            .iter()
            .chain(req.form.iter())
            .filter(|(k, _)| k != "Signature")
            .cloned()
            .collect();
        let sts = sign::v1_string_to_sign(req.method, &params);
        let expected = sign::v1_signature(secret, &sts);
        if !sign::signatures_equal(&expected, given) {
            return Err(ApiError::new(
                400,
                "SignatureDoesNotMatch",
                format!(
                    "Specified signature does not match our calculation. server string to sign is:{sts}"
                ),
            ));
        }
        self.record_nonce(req.param("SignatureNonce").unwrap_or_default())
    }
}
