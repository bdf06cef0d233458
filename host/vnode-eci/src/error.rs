//! Typed ECI errors, classified from the wire error code and HTTP status.

use std::time::Duration;

/// Everything that can go wrong calling ECI. Credentials never appear in any variant.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EciError {
    /// Flow control (`Throttling*`, `Degrade.Api`, or any error with `x-acs-retry-after`).
    #[error("throttled by ECI ({code}): {message} [request {request_id}]")]
    Throttled {
        /// Wire error code.
        code: String,
        /// Wire message.
        message: String,
        /// `RequestId`.
        request_id: String,
        /// `x-acs-retry-after`, if the server sent one.
        retry_after: Option<Duration>,
    },
    /// The zone (or every zone asked for) has no stock for the spec.
    #[error("no stock in zone {} for spec {} ({code}): {message} [request {request_id}]", zone.as_deref().unwrap_or("?"), spec.as_deref().unwrap_or("?"))]
    NoStock {
        /// The zone that is sold out, if known.
        zone: Option<String>,
        /// The spec asked for (`2.0-4.0Gi` or an instance type), if known.
        spec: Option<String>,
        /// Wire error code.
        code: String,
        /// Wire message.
        message: String,
        /// `RequestId`.
        request_id: String,
    },
    /// The request cannot succeed as sent (missing/invalid parameter, unknown action, …).
    #[error("invalid request ({code}): {message} [request {request_id}]")]
    InvalidParameter {
        /// Wire error code, e.g. `MissingParameter`, `InvalidParameter.Cpu`.
        code: String,
        /// Wire message.
        message: String,
        /// `RequestId`.
        request_id: String,
    },
    /// Authentication or authorisation failed (unknown key, bad signature, clock skew, RAM).
    #[error("authentication failed ({code}): {message} [request {request_id}]")]
    Auth {
        /// Wire error code.
        code: String,
        /// Wire message.
        message: String,
        /// `RequestId`.
        request_id: String,
    },
    /// The container group does not exist.
    #[error("not found ({code}): {message} [request {request_id}]")]
    NotFound {
        /// Wire error code.
        code: String,
        /// Wire message.
        message: String,
        /// `RequestId`.
        request_id: String,
    },
    /// The `ClientToken` was used before with different parameters.
    #[error("client token reused with different parameters: {message} [request {request_id}]")]
    IdempotencyMismatch {
        /// Wire message.
        message: String,
        /// `RequestId`.
        request_id: String,
    },
    /// The group is in the wrong state for the operation, or a conflicting call is in flight
    /// (`IncorrectStatus`, `OperationConflict`).
    #[error("conflict ({code}): {message} [request {request_id}]")]
    Conflict {
        /// Wire error code.
        code: String,
        /// Wire message.
        message: String,
        /// `RequestId`.
        request_id: String,
    },
    /// `DryRun=true` passed every check (ECI reports success of a dry run as this error).
    #[error("dry run passed [request {request_id}]")]
    DryRunPassed {
        /// `RequestId`.
        request_id: String,
    },
    /// 5xx: the service failed.
    #[error("ECI server error {status} ({code}): {message} [request {request_id}]")]
    Server {
        /// HTTP status.
        status: u16,
        /// Wire error code.
        code: String,
        /// Wire message.
        message: String,
        /// `RequestId`.
        request_id: String,
    },
    /// The request did not complete: connect failure, timeout, broken connection.
    #[error("transport error{}: {message}", if *timeout { " (timeout)" } else { "" })]
    Transport {
        /// What happened (never includes the URL).
        message: String,
        /// Whether it was a timeout (the server may still have acted).
        timeout: bool,
    },
    /// The response could not be understood.
    #[error("cannot decode ECI response: {message} [request {request_id}]")]
    Decode {
        /// What was wrong.
        message: String,
        /// `RequestId`, if one could be read.
        request_id: String,
    },
    /// The client is misconfigured (bad endpoint, unreadable credentials file, …).
    #[error("ECI client configuration: {0}")]
    Config(String),
}

impl EciError {
    /// Whether retrying the same call (same `ClientToken`) may succeed: throttling, 5xx and
    /// transport failures. 4xx errors that cannot succeed are not retried.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Throttled { .. } | Self::Server { .. } | Self::Transport { .. }
        )
    }

    /// The server's requested back-off, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The wire error code, if the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Throttled { code, .. }
            | Self::NoStock { code, .. }
            | Self::InvalidParameter { code, .. }
            | Self::Auth { code, .. }
            | Self::NotFound { code, .. }
            | Self::Conflict { code, .. }
            | Self::Server { code, .. } => Some(code),
            Self::IdempotencyMismatch { .. } => Some("IdempotentParameterMismatch"),
            Self::DryRunPassed { .. } => Some("DryRunOperation"),
            Self::Transport { .. } | Self::Decode { .. } | Self::Config(_) => None,
        }
    }

    /// Classifies an error response (status, `Code`, `Message`, `RequestId`, `x-acs-retry-after`).
    pub fn from_response(
        status: u16,
        code: String,
        message: String,
        request_id: String,
        retry_after: Option<Duration>,
    ) -> Self {
        let c = code.as_str();
        if c.starts_with("Throttling") || c == "Degrade.Api" || retry_after.is_some() {
            return Self::Throttled {
                code,
                message,
                request_id,
                retry_after,
            };
        }
        if c == "IdempotentParameterMismatch" {
            return Self::IdempotencyMismatch {
                message,
                request_id,
            };
        }
        if c == "DryRunOperation" {
            return Self::DryRunPassed { request_id };
        }
        if c.contains("NoStock") || c.contains("StockExhaust") || c.contains("StockClose") {
            let zone = word_after(&message, "zone ");
            let spec = word_after(&message, "spec ");
            return Self::NoStock {
                zone,
                spec,
                code,
                message,
                request_id,
            };
        }
        if c.starts_with("InvalidAccessKeyId")
            || c.starts_with("SignatureDoesNotMatch")
            || c.starts_with("IncompleteSignature")
            || c.starts_with("SignatureNonceUsed")
            || c.starts_with("InvalidTimeStamp")
            || c.starts_with("MissingSignature")
            || c.starts_with("Forbidden")
            || c.starts_with("InvalidSecurityToken")
            || c.ends_with(".Denied")
        {
            return Self::Auth {
                code,
                message,
                request_id,
            };
        }
        if c == "InvalidParameter.NotFound" || c == "ContainerGroup.NotFound" || c == "NotFound" {
            return Self::NotFound {
                code,
                message,
                request_id,
            };
        }
        if c == "IncorrectStatus" || c == "OperationConflict" || c.starts_with("IncorrectStatus.") {
            return Self::Conflict {
                code,
                message,
                request_id,
            };
        }
        if status >= 500 {
            return Self::Server {
                status,
                code,
                message,
                request_id,
            };
        }
        Self::InvalidParameter {
            code,
            message,
            request_id,
        }
    }
}

/// The token after `marker` in `text`, without trailing punctuation.
fn word_after(text: &str, marker: &str) -> Option<String> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let word: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ',')
        .collect();
    let word = word.trim_end_matches(['.', ';', ')']).to_string();
    (!word.is_empty()).then_some(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(status: u16, code: &str, msg: &str) -> EciError {
        EciError::from_response(status, code.into(), msg.into(), "R".into(), None)
    }

    #[test]
    fn classes() {
        assert!(matches!(
            classify(400, "Throttling.User", ""),
            EciError::Throttled { .. }
        ));
        assert!(matches!(
            classify(400, "IdempotentParameterMismatch", ""),
            EciError::IdempotencyMismatch { .. }
        ));
        assert!(matches!(
            classify(404, "InvalidAccessKeyId.NotFound", ""),
            EciError::Auth { .. }
        ));
        assert!(matches!(
            classify(400, "SignatureDoesNotMatch", ""),
            EciError::Auth { .. }
        ));
        assert!(matches!(
            classify(404, "InvalidParameter.NotFound", ""),
            EciError::NotFound { .. }
        ));
        assert!(matches!(
            classify(400, "IncorrectStatus", ""),
            EciError::Conflict { .. }
        ));
        assert!(matches!(
            classify(500, "InternalError", ""),
            EciError::Server { .. }
        ));
        assert!(matches!(
            classify(400, "MissingParameter", ""),
            EciError::InvalidParameter { .. }
        ));
        match classify(
            403,
            "OperationDenied.NoStock",
            "The resource in zone cn-hangzhou-k with spec 2.0-4.0Gi is out of stock.",
        ) {
            EciError::NoStock { zone, spec, .. } => {
                assert_eq!(zone.as_deref(), Some("cn-hangzhou-k"));
                assert_eq!(spec.as_deref(), Some("2.0-4.0Gi"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let t = EciError::from_response(
            400,
            "X".into(),
            "".into(),
            "R".into(),
            Some(Duration::from_millis(5)),
        );
        assert!(t.is_retryable());
        assert_eq!(t.retry_after(), Some(Duration::from_millis(5)));
        assert!(!classify(400, "InvalidParameter", "").is_retryable());
    }
}
