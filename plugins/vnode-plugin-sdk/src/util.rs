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
    if config.is_empty() {
        // The usual configuration, parsed on every decision: not even a line iterator.
        return Ok(out);
    }
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

/// Standard base64 with padding (what ECI's config-file volumes expect), without a dependency.
pub fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_key_values_with_comments() {
        let parsed = parse_key_values("# c\n a = 1 \n\nb= x y # trailing\n").expect("valid");
        assert_eq!(parsed, vec![("a", "1"), ("b", "x y")]);
        assert_eq!(parse_key_values(""), Ok(Vec::new()));
        assert_eq!(parse_key_values("\n # only a comment\n"), Ok(Vec::new()));
    }

    #[test]
    fn rejects_lines_without_equals() {
        let err = parse_key_values("a = 1\nnonsense").expect_err("invalid");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), encoded);
        }
        assert_eq!(base64_encode(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn bools() {
        assert_eq!(parse_bool("k", " true"), Ok(true));
        assert!(parse_bool("k", "yes").expect_err("bad").contains("yes"));
    }
}
