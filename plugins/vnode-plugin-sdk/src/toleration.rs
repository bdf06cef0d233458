//! Toleration checks with Kubernetes' matching rules (`ToleratesTaint`).

use crate::Toleration;

/// A taint as a policy wants to check it: `key=value:effect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taint<'a> {
    /// Taint key.
    pub key: &'a str,
    /// Taint value (empty for none).
    pub value: &'a str,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: &'a str,
}

/// Whether one toleration tolerates the taint: same effect (or none given), and same key with
/// `Equal` and the same value, or same key (or no key) with `Exists`.
pub fn tolerates(toleration: &Toleration, taint: Taint<'_>) -> bool {
    if let Some(effect) = toleration.effect.as_deref()
        && !effect.is_empty()
        && effect != taint.effect
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    let exists = toleration.operator.as_deref() == Some("Exists");
    if key.is_empty() {
        // An empty key only matches with `Exists` (tolerate everything).
        return exists;
    }
    if key != taint.key {
        return false;
    }
    match toleration.operator.as_deref() {
        Some("Exists") => true,
        None | Some("") | Some("Equal") => toleration.value.as_deref().unwrap_or("") == taint.value,
        // An operator Kubernetes does not know tolerates nothing.
        Some(_) => false,
    }
}

/// Whether any of the pod's tolerations tolerates the taint.
pub fn any_tolerates(tolerations: &[Toleration], taint: Taint<'_>) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(
        key: Option<&str>,
        op: Option<&str>,
        value: Option<&str>,
        effect: Option<&str>,
    ) -> Toleration {
        Toleration {
            key: key.map(Into::into),
            operator: op.map(Into::into),
            value: value.map(Into::into),
            effect: effect.map(Into::into),
            toleration_seconds: None,
        }
    }

    const SPOT: Taint<'static> = Taint {
        key: "vnode.io/spot",
        value: "true",
        effect: "NoSchedule",
    };

    #[test]
    fn equal_needs_key_and_value() {
        assert!(tolerates(
            &t(Some("vnode.io/spot"), None, Some("true"), None),
            SPOT
        ));
        assert!(tolerates(
            &t(
                Some("vnode.io/spot"),
                Some("Equal"),
                Some("true"),
                Some("NoSchedule")
            ),
            SPOT
        ));
        assert!(!tolerates(
            &t(Some("vnode.io/spot"), None, Some("false"), None),
            SPOT
        ));
        assert!(!tolerates(
            &t(Some("other"), None, Some("true"), None),
            SPOT
        ));
    }

    #[test]
    fn exists_and_effects() {
        assert!(tolerates(
            &t(Some("vnode.io/spot"), Some("Exists"), None, None),
            SPOT
        ));
        assert!(
            tolerates(&t(None, Some("Exists"), None, None), SPOT),
            "tolerate everything"
        );
        assert!(!tolerates(&t(None, None, None, None), SPOT));
        assert!(!tolerates(
            &t(
                Some("vnode.io/spot"),
                Some("Exists"),
                None,
                Some("NoExecute")
            ),
            SPOT
        ));
        assert!(!tolerates(
            &t(Some("vnode.io/spot"), Some("Gt"), Some("true"), None),
            SPOT
        ));
        assert!(any_tolerates(
            &[
                t(Some("a"), None, None, None),
                t(Some("vnode.io/spot"), Some("Exists"), None, None)
            ],
            SPOT
        ));
        assert!(!any_tolerates(&[], SPOT));
    }
}
