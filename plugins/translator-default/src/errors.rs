//! Constructors for the two refusal kinds, so every refusal names a field, and [`At`], the
//! field path they name.

use core::fmt;

use vnode_plugin_sdk::translator::{FieldError, TranslateError};

// Both constructors are `#[cold]` and never inlined: every branch that ends in a refusal is then
// laid out away from the success path, so a translation that succeeds touches fewer cache
// lines of code (a decision after a pause runs on cold caches; see the crate docs).

/// The pod is malformed for ECI (too big, a bad name, a reference that cannot resolve).
#[cold]
#[inline(never)]
pub(crate) fn invalid(field: impl fmt::Display, message: impl Into<String>) -> TranslateError {
    TranslateError::InvalidPod(FieldError {
        field: field.to_string(),
        message: message.into(),
    })
}

/// The pod uses something ECI cannot run.
#[cold]
#[inline(never)]
pub(crate) fn unsupported(field: impl fmt::Display, message: impl Into<String>) -> TranslateError {
    TranslateError::Unsupported(FieldError {
        field: field.to_string(),
        message: message.into(),
    })
}

pub(crate) type Result<T> = core::result::Result<T, TranslateError>;

/// A field path in the pod (`spec.containers[2].env[0].name`), written out only when a refusal
/// names it. Why not a `String`: building every container's, env var's and probe's path with
/// `format!` up front cost 7.5 % of a translation call (profile, session 7), for paths that
/// only a refused pod ever shows. An `At` is a few words on the stack that point at its parent.
#[derive(Clone, Copy)]
pub(crate) struct At<'a> {
    parent: Option<&'a At<'a>>,
    step: Step,
}

#[derive(Clone, Copy)]
enum Step {
    /// `.name` (or just `name` at the root).
    Field(&'static str),
    /// `[i]`.
    Index(usize),
}

impl<'a> At<'a> {
    /// A path starting with `path` (e.g. `spec.containers`).
    pub(crate) const fn root(path: &'static str) -> At<'static> {
        At {
            parent: None,
            step: Step::Field(path),
        }
    }

    /// `self.name`.
    pub(crate) fn field(&'a self, name: &'static str) -> At<'a> {
        At {
            parent: Some(self),
            step: Step::Field(name),
        }
    }

    /// `self[i]`.
    pub(crate) fn index(&'a self, i: usize) -> At<'a> {
        At {
            parent: Some(self),
            step: Step::Index(i),
        }
    }
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = self.parent {
            parent.fmt(f)?;
        }
        match self.step {
            Step::Field(name) if self.parent.is_some() => write!(f, ".{name}"),
            Step::Field(name) => f.write_str(name),
            Step::Index(i) => write!(f, "[{i}]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::At;

    #[test]
    fn paths_render_like_kubernetes_field_paths() {
        let containers = At::root("spec.containers");
        let c = containers.index(2);
        assert_eq!(c.to_string(), "spec.containers[2]");
        assert_eq!(
            c.field("env").index(0).field("name").to_string(),
            "spec.containers[2].env[0].name"
        );
        assert_eq!(
            c.field("lifecycle").field("preStop").to_string(),
            "spec.containers[2].lifecycle.preStop"
        );
    }
}
