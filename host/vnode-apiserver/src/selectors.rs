//! Label and field selectors as they appear in `labelSelector=` / `fieldSelector=`.

use serde_json::Value;

use crate::resources::{RESOURCES, ResourceId, ids};
use crate::status::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector (all requirements must hold).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<LabelReq>);

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn valid_label_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

impl LabelSelector {
    /// Parses `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let bad = |why: &str| ApiError::bad_request(format!("unable to parse requirement: {why}"));
        let mut reqs = Vec::new();
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let req = if let Some(k) = part.strip_prefix('!') {
                LabelReq::NotExists(k.trim().to_string())
            } else if let Some((k, v)) = part.split_once("!=") {
                LabelReq::NotEq(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = part.split_once("==") {
                LabelReq::Eq(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = part.split_once('=') {
                LabelReq::Eq(k.trim().to_string(), v.trim().to_string())
            } else if let Some(open) = part.find('(') {
                let head = part[..open].trim();
                let close = part
                    .rfind(')')
                    .ok_or_else(|| bad(&format!("missing ')' in {part:?}")))?;
                let values: Vec<String> = part[open + 1..close]
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .collect();
                let (key, op) = head
                    .rsplit_once(char::is_whitespace)
                    .ok_or_else(|| bad(part))?;
                match op.trim() {
                    "in" => LabelReq::In(key.trim().to_string(), values),
                    "notin" => LabelReq::NotIn(key.trim().to_string(), values),
                    other => return Err(bad(&format!("unknown operator {other:?}"))),
                }
            } else {
                LabelReq::Exists(part.to_string())
            };
            let key = match &req {
                LabelReq::Eq(k, _)
                | LabelReq::NotEq(k, _)
                | LabelReq::In(k, _)
                | LabelReq::NotIn(k, _)
                | LabelReq::Exists(k)
                | LabelReq::NotExists(k) => k,
            };
            if !valid_label_key(key) {
                return Err(bad(&format!("invalid label key {key:?}")));
            }
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    /// Whether the selector is empty (matches everything).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an object's `metadata.labels` satisfy the selector.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        self.matches_with(|k| labels.get(k).and_then(Value::as_str))
    }

    /// Whether labels looked up by `get` satisfy the selector.
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.0.iter().all(|r| match r {
            LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => get(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
        })
    }
}

/// A parsed field selector: `path=value` / `path!=value` terms.
#[derive(Debug, Clone, Default)]
pub struct FieldSelector(Vec<(String, bool, String)>);

/// Field paths the real server supports per resource (beyond `metadata.name/namespace`).
pub(crate) fn supported_fields(res: ResourceId) -> &'static [&'static str] {
    match res {
        ids::PODS => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ids::EVENTS | ids::EVENTS_V1 => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
        ],
        ids::NODES => &["spec.unschedulable"],
        ids::NAMESPACES => &["status.phase"],
        ids::SECRETS => &["type"],
        _ => RESOURCES[res].selectable_fields,
    }
}

impl FieldSelector {
    /// Parses a field selector for `res`; unsupported field labels are a 400 like upstream.
    pub fn parse(s: &str, res: ResourceId) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (k, neg, v) = if let Some((k, v)) = part.split_once("!=") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, false, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let k = k.trim();
            if k != "metadata.name"
                && k != "metadata.namespace"
                && !supported_fields(res).contains(&k)
            {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {k}"
                )));
            }
            terms.push((k.to_string(), neg, v.trim().to_string()));
        }
        let _ = RESOURCES[res].kind;
        Ok(Self(terms))
    }

    /// Whether the selector is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value a `metadata.name=` term pins, for a fast single-object path.
    pub fn pinned_name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, neg, _)| k == "metadata.name" && !neg)
            .map(|(_, _, v)| v.as_str())
    }

    /// Whether an object satisfies every term. Absent fields compare as `""` (so
    /// `spec.nodeName=` selects unbound pods, as the scheduler and kubelets rely on).
    pub fn matches(&self, obj: &Value) -> bool {
        self.0
            .iter()
            .all(|(path, neg, want)| (field_value(obj, path) == *want) != *neg)
    }

    /// [`FieldSelector::matches`] on values looked up by `get` (a path `get` does not
    /// know compares as `""`).
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.0
            .iter()
            .all(|(path, neg, want)| (get(path).unwrap_or("") == want.as_str()) != *neg)
    }
}

/// A field's value as field selectors compare it: strings as they are, absent or null as
/// `""`, anything else as its JSON text.
pub(crate) fn field_value(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for seg in path.split('.') {
        cur = &cur[seg];
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selector_operators() {
        let o = json!({"metadata": {"labels": {"app": "web", "tier": "fe"}}});
        for (sel, want) in [
            ("app=web", true),
            ("app==web,tier=fe", true),
            ("app!=web", false),
            ("app in (api, web)", true),
            ("tier notin (fe)", false),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("missing notin (x)", true),
            ("", true),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).expect(sel).matches(&o),
                want,
                "{sel}"
            );
        }
        assert!(LabelSelector::parse("a in (x").is_err());
        assert!(LabelSelector::parse("a b c").is_err());
    }

    #[test]
    fn field_selector_semantics() {
        let pod = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {}, "status": {"phase": "Pending"}});
        assert!(
            FieldSelector::parse("spec.nodeName=", ids::PODS)
                .expect("ok")
                .matches(&pod)
        );
        assert!(
            FieldSelector::parse("status.phase!=Running,metadata.name=p", ids::PODS)
                .expect("ok")
                .matches(&pod)
        );
        assert!(
            !FieldSelector::parse("metadata.namespace=x", ids::PODS)
                .expect("ok")
                .matches(&pod)
        );
        let e = FieldSelector::parse("spec.foo=1", ids::PODS).expect_err("unsupported");
        assert_eq!(e.code, 400);
        assert!(FieldSelector::parse("spec.nodeName=x", ids::CONFIGMAPS).is_err());
    }
}
