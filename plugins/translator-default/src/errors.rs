//! Constructors for the two refusal kinds, so every refusal names a field.

use vnode_plugin_sdk::translator::{FieldError, TranslateError};

/// The pod is malformed for ECI (too big, a bad name, a reference that cannot resolve).
pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> TranslateError {
    TranslateError::InvalidPod(FieldError {
        field: field.into(),
        message: message.into(),
    })
}

/// The pod uses something ECI cannot run.
pub(crate) fn unsupported(field: impl Into<String>, message: impl Into<String>) -> TranslateError {
    TranslateError::Unsupported(FieldError {
        field: field.into(),
        message: message.into(),
    })
}

pub(crate) type Result<T> = core::result::Result<T, TranslateError>;
