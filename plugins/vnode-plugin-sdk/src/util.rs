//! Small helpers every plugin needs; pure, so they work in native unit tests too.

use crate::{KeyValue, PodMeta};

/// The value of annotation `key` on the pod, if set.
pub fn annotation<'a>(meta: &'a PodMeta, key: &str) -> Option<&'a str> {
    find(&meta.annotations, key)
}

/// The value of label `key` on the pod, if set.
pub fn label<'a>(meta: &'a PodMeta, key: &str) -> Option<&'a str> {
    find(&meta.labels, key)
}

/// The value for `key` in a list of pairs (first match, as Kubernetes keys are unique).
pub fn find<'a>(pairs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| kv.value.as_str())
}

/// `true` or `false`, with an error naming `key` otherwise.
pub fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!("{key}: {other:?} is not true or false")),
    }
}

/// Parses the simple configuration format the shipped plugins use: one `key = value` per
/// line, `#` starts a comment, blank lines are ignored. Returns the pairs in order, or an
/// error naming the line. Cheap enough to run on every decision (no serde in the guest).
pub fn parse_key_values(config: &str) -> Result<Vec<(&str, &str)>, String> {
    let mut out = Vec::new();
    for (index, raw) in config.lines().enumerate() {
        let line = match raw.find('#') {
            Some(hash) => &raw[..hash],
            None => raw,
        }
        .trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!(
                "config line {}: expected `key = value`, found {line:?}",
                index + 1
            ));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("config line {}: empty key", index + 1));
        }
        out.push((key, value.trim()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_key_values_with_comments() {
        let parsed = parse_key_values("# c\n a = 1 \n\nb= x y # trailing\n").expect("valid");
        assert_eq!(parsed, vec![("a", "1"), ("b", "x y")]);
    }

    #[test]
    fn rejects_lines_without_equals() {
        let err = parse_key_values("a = 1\nnonsense").expect_err("invalid");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn bools() {
        assert_eq!(parse_bool("k", " true"), Ok(true));
        assert!(parse_bool("k", "yes").expect_err("bad").contains("yes"));
    }
}
