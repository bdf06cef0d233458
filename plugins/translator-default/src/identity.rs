//! The container group's identity: its name and the tags the daemon reconciles by.

use vnode_plugin_sdk::KeyValue;

use crate::errors::{Result, invalid};

/// Tag keys carrying the pod's identity. The daemon lists and reconciles container groups by
/// these, so they are part of vnode's contract with itself: never change them.
pub const TAG_CLUSTER: &str = "vnode.io/cluster";
pub const TAG_NODE: &str = "vnode.io/node";
pub const TAG_NAMESPACE: &str = "vnode.io/namespace";
pub const TAG_POD_NAME: &str = "vnode.io/pod-name";
pub const TAG_POD_UID: &str = "vnode.io/pod-uid";

/// Whether `key` is one of the identity tags above (which nobody but the translator may set).
pub fn is_identity_tag(key: &str) -> bool {
    [
        TAG_CLUSTER,
        TAG_NODE,
        TAG_NAMESPACE,
        TAG_POD_NAME,
        TAG_POD_UID,
    ]
    .contains(&key)
}

/// ECI limits on tags.
pub const MAX_TAGS: usize = 20;
const MAX_TAG_KEY: usize = 64;
const MAX_TAG_VALUE: usize = 128;
const MAX_NAME: usize = 128;

/// `ContainerGroupName`: `<namespace>-<name>` when that is already a valid ECI name (the common
/// case: namespaces and most pod names are DNS labels), otherwise a sanitised, truncated form
/// plus `-` and 8 hex digits of a hash of the pod UID, so two different pods that sanitise to
/// the same text still get different names.
pub fn container_group_name(namespace: &str, name: &str, uid: &str) -> String {
    let raw_len = namespace.len() + 1 + name.len();
    // The common case without a character-by-character copy: both parts are already made of
    // `a-z 0-9 -`, the joined name neither starts nor ends with `-` and is short enough.
    let plain = |s: &str| {
        s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
    };
    if !namespace.starts_with('-')
        && !namespace.is_empty()
        && !name.is_empty()
        && !name.ends_with('-')
        && raw_len <= MAX_NAME
        && plain(namespace)
        && plain(name)
    {
        let mut out = String::with_capacity(raw_len);
        out.push_str(namespace);
        out.push('-');
        out.push_str(name);
        return out;
    }
    sanitised_name(namespace, name, uid)
}

/// [`container_group_name`] in general, one character at a time.
fn sanitised_name(namespace: &str, name: &str, uid: &str) -> String {
    let raw_len = namespace.len() + 1 + name.len();
    let mut out = String::with_capacity(raw_len.min(MAX_NAME));
    let mut changed = false;
    for c in namespace
        .chars()
        .chain(core::iter::once('-'))
        .chain(name.chars())
    {
        match c {
            'a'..='z' | '0'..='9' | '-' => out.push(c),
            'A'..='Z' => {
                out.push(c.to_ascii_lowercase());
                changed = true;
            }
            _ => {
                out.push('-');
                changed = true;
            }
        }
    }
    let trimmed = out.trim_matches('-');
    if !changed && trimmed.len() == out.len() && (2..=MAX_NAME).contains(&out.len()) {
        return out;
    }
    let suffix = hex8(fnv1a32(uid.as_bytes()));
    // `out` holds only ASCII, so a byte count is a character count.
    let keep = MAX_NAME - 1 - suffix.len();
    let base = trimmed[..trimmed.len().min(keep)].trim_end_matches('-');
    let mut named = String::with_capacity(MAX_NAME);
    named.push_str(if base.is_empty() { "pod" } else { base });
    named.push('-');
    named.extend(suffix.iter().map(|&b| char::from(b)));
    named
}

/// `v` as 8 lowercase hex digits (`{:08x}`, without `core::fmt`).
fn hex8(v: u32) -> [u8; 8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 8];
    for (i, digit) in out.iter_mut().enumerate() {
        *digit = HEX[((v >> (28 - 4 * i)) & 15) as usize];
    }
    out
}

/// 32-bit FNV-1a: tiny, stable across versions and platforms (a name must never change for the
/// same pod), and plenty to tell apart the rare pods whose names needed sanitising.
fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Checks one tag against ECI's rules; `field` names where it came from.
pub fn validate_tag(tag: &KeyValue, field: &str) -> Result<()> {
    let key = tag.key.as_str();
    if key.is_empty() || key.len() > MAX_TAG_KEY {
        return Err(invalid(
            field,
            format!("tag key {key:?} must be 1-{MAX_TAG_KEY} characters"),
        ));
    }
    if starts_with_ignore_case(key, "acs:") || starts_with_ignore_case(key, "aliyun") {
        return Err(invalid(
            field,
            format!("tag key {key:?} may not start with \"acs:\" or \"aliyun\""),
        ));
    }
    if contains_ignore_case(key, "http://") || contains_ignore_case(key, "https://") {
        return Err(invalid(
            field,
            format!("tag key {key:?} may not contain http:// or https://"),
        ));
    }
    if tag.value.len() > MAX_TAG_VALUE {
        return Err(invalid(
            field,
            format!(
                "value of tag {key:?} is {} characters; ECI allows at most {MAX_TAG_VALUE}",
                tag.value.len()
            ),
        ));
    }
    Ok(())
}

/// ASCII case-insensitive `starts_with` (no lowercased copy of every tag key per translation).
fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// ASCII case-insensitive `contains`.
fn contains_ignore_case(text: &str, needle: &str) -> bool {
    text.as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The identity tags. The pod-name value is cut to ECI's 128 characters (pod names may have
/// 253): the UID tag is the identity, the name tag is for people.
pub fn identity_tags(
    cluster: &str,
    node: &str,
    namespace: &str,
    pod_name: &str,
    uid: &str,
) -> Result<Vec<KeyValue>> {
    let tag = |k: &str, v: &str| KeyValue {
        key: k.to_string(),
        value: v.to_string(),
    };
    for (what, value) in [("node.cluster-name", cluster), ("node.node-name", node)] {
        if value.len() > MAX_TAG_VALUE {
            return Err(invalid(
                what,
                format!(
                    "{value:?} is longer than {MAX_TAG_VALUE} characters, the most an ECI tag value may have"
                ),
            ));
        }
    }
    // The first 128 characters (a name of at most 128 bytes has no more).
    let short_name = if pod_name.len() <= MAX_TAG_VALUE {
        pod_name
    } else {
        match pod_name.char_indices().nth(MAX_TAG_VALUE) {
            Some((end, _)) => &pod_name[..end],
            None => pod_name,
        }
    };
    Ok(vec![
        tag(TAG_CLUSTER, cluster),
        tag(TAG_NODE, node),
        tag(TAG_NAMESPACE, namespace),
        tag(TAG_POD_NAME, short_name),
        tag(TAG_POD_UID, uid),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_kept_readable() {
        assert_eq!(
            container_group_name("default", "web-7d9f8-abcde", "u1"),
            "default-web-7d9f8-abcde"
        );
    }

    #[test]
    fn dotted_names_get_a_uid_suffix_and_stay_distinct() {
        let a = container_group_name("default", "web.v1", "uid-a");
        let b = container_group_name("default", "web-v1", "uid-b");
        let c = container_group_name("default", "web.v1", "uid-c");
        assert!(a.starts_with("default-web-v1-"), "{a}");
        assert_eq!(a.len(), "default-web-v1-".len() + 8);
        assert_eq!(b, "default-web-v1");
        assert_ne!(a, c, "same text, different UIDs");
        assert_eq!(
            a,
            container_group_name("default", "web.v1", "uid-a"),
            "deterministic"
        );
    }

    #[test]
    fn long_names_are_cut_to_128_with_valid_edges() {
        let name = format!("{}.x", "a".repeat(250));
        let n = container_group_name("ns", &name, "uid");
        assert_eq!(n.len(), 128);
        assert!(
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        assert!(!n.starts_with('-') && !n.ends_with('-'));
        let long_plain = "b".repeat(200);
        assert_eq!(container_group_name("ns", &long_plain, "u").len(), 128);
    }

    #[test]
    fn the_quick_path_names_like_the_general_one() {
        let plain_128 = "c".repeat(128 - "ns-".len());
        let plain_129 = "c".repeat(129 - "ns-".len());
        for (ns, name) in [
            ("default", "web-7d9f8-abcde"),
            ("ns", plain_128.as_str()),
            ("ns", plain_129.as_str()),
            ("ns", "web-"),
            ("-ns", "web"),
            ("", "web"),
            ("ns", ""),
            ("", ""),
            ("a", "b"),
            ("Prod", "web"),
            ("ns", "web_1"),
            ("ns", "wéb"),
            ("ns", "--"),
        ] {
            assert_eq!(
                container_group_name(ns, name, "uid"),
                sanitised_name(ns, name, "uid"),
                "{ns:?} {name:?}"
            );
        }
    }

    #[test]
    fn hex8_is_08x() {
        for v in [0, 1, 0xa, 0xdead_beef, 0x0123_4567, u32::MAX] {
            assert_eq!(hex8(v).as_slice(), format!("{v:08x}").as_bytes());
        }
        assert_eq!(
            sanitised_name("", "", "uid"),
            format!("pod-{:08x}", fnv1a32(b"uid"))
        );
    }

    #[test]
    fn fnv_is_the_reference_fnv1a() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
    }

    #[test]
    fn tag_rules() {
        let kv = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: v.into(),
        };
        assert!(validate_tag(&kv("team", "a"), "f").is_ok());
        assert!(validate_tag(&kv("", "a"), "f").is_err());
        assert!(validate_tag(&kv("acs:x", "a"), "f").is_err());
        assert!(validate_tag(&kv("Aliyun-x", "a"), "f").is_err());
        assert!(validate_tag(&kv("see https://x", "a"), "f").is_err());
        assert!(validate_tag(&kv("see HTTP://x", "a"), "f").is_err());
        assert!(validate_tag(&kv("ACS:x", "a"), "f").is_err());
        assert!(validate_tag(&kv("acs", "a"), "f").is_ok());
        assert!(validate_tag(&kv("https", "a"), "f").is_ok());
        assert!(validate_tag(&kv(&"k".repeat(65), "a"), "f").is_err());
        assert!(validate_tag(&kv("k", &"v".repeat(129)), "f").is_err());
    }

    #[test]
    fn identity_tags_cut_long_pod_names() {
        let tags = identity_tags("c", "n", "ns", &"p".repeat(200), "uid").unwrap();
        assert_eq!(tags[3].value.len(), 128);
        // 128 characters, not bytes: 100 two-byte ones fit, the 129th character is cut.
        let wide = format!("{}{}", "é".repeat(100), "p".repeat(40));
        let tags = identity_tags("c", "n", "ns", &wide, "uid").unwrap();
        assert_eq!(tags[3].value, wide.chars().take(128).collect::<String>());
        let tags = identity_tags("c", "n", "ns", &"é".repeat(100), "uid").unwrap();
        assert_eq!(tags[3].value, "é".repeat(100));
        assert_eq!(tags[4].key, TAG_POD_UID);
        assert!(identity_tags("c", &"n".repeat(129), "ns", "p", "u").is_err());
    }
}
