//! The response and error envelopes, exactly as the gateway sends them.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use vnode_eci::wire::params::{ParamError, ParamErrorKind};

/// An error answer: HTTP status, ECI code and message (and, for throttling, a retry hint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// `Code`.
    pub code: String,
    /// `Message`.
    pub message: String,
    /// `x-acs-retry-after` in ms.
    pub retry_after_ms: Option<u64>,
}

impl ApiError {
    /// An error with status, code and message.
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// `MissingParameter` for a parameter.
    pub fn missing(param: &str) -> Self {
        Self::new(
            400,
            "MissingParameter",
            format!(
                "The input parameter \"{param}\" that is mandatory for processing this request is not supplied."
            ),
        )
    }

    /// `InvalidParameter` for a parameter.
    pub fn invalid_value(param: &str) -> Self {
        Self::new(
            400,
            "InvalidParameter",
            format!("The specified parameter \"{param}\" is not valid."),
        )
    }

    /// `InvalidParameter` with a reason.
    pub fn invalid(param: &str, reason: impl std::fmt::Display) -> Self {
        Self::new(
            400,
            "InvalidParameter",
            format!("The specified parameter \"{param}\" is not valid: {reason}"),
        )
    }

    /// The group does not exist.
    pub fn group_not_found(id: &str) -> Self {
        Self::new(
            404,
            "InvalidParameter.NotFound",
            format!("The specified ContainerGroupId \"{id}\" is not found."),
        )
    }

    /// The group is in the wrong state.
    pub fn incorrect_status(id: &str, status: &str) -> Self {
        Self::new(
            400,
            "IncorrectStatus",
            format!(
                "The current status of the container group {id} is {status}, which does not support this operation."
            ),
        )
    }
}

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> Self {
        match e.kind {
            ParamErrorKind::Missing => ApiError::missing(&e.param),
            ParamErrorKind::Invalid => ApiError::invalid(&e.param, &e.reason),
        }
    }
}

/// A fresh `RequestId`: an upper-case UUID.
pub fn request_id() -> String {
    uuid::Uuid::new_v4()
        .hyphenated()
        .to_string()
        .to_ascii_uppercase()
}

const JSON: &str = "application/json;charset=utf-8";

/// A 200 with a JSON body.
pub fn ok_json(request_id: &str, body: Vec<u8>) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-acs-request-id", v);
    }
    r
}

/// The error envelope: `RequestId`, `HostId`, `Code`, `Message`, `Recommend`.
pub fn error_response(err: &ApiError, request_id: &str, host: &str) -> Response {
    let body = serde_json::json!({
        "RequestId": request_id,
        "HostId": host,
        "Code": err.code,
        "Message": err.message,
        "Recommend": format!("https://api.aliyun.com/troubleshoot?q={}&product=Eci&requestId={request_id}", err.code),
    });
    let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, body.to_string()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-acs-request-id", v);
    }
    if let Some(ms) = err.retry_after_ms {
        h.insert("x-acs-retry-after", HeaderValue::from(ms.max(1)));
    }
    r
}
