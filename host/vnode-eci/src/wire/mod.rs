//! ECI wire-level primitives: RFC 3986 percent-encoding, the two signature schemes,
//! parameter flattening, timestamps and nonces.
//!
//! These are public because the emulator (`vnode-eci-emulator`) must verify exactly what
//! this client produces; nothing else in vnode should need them.

pub mod params;
pub mod sign;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything except the RFC 3986 unreserved set (`A–Z a–z 0–9 - _ . ~`) is escaped.
/// `percent-encoding` emits upper-case hex, which both signature schemes require.
const RFC3986_RESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes `s` the way both ECI signature schemes canonicalise names and values:
/// space becomes `%20` (never `+`), `*` becomes `%2A`, `~` stays.
pub fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, RFC3986_RESERVED).to_string()
}

/// Sorted (by name, then value), RFC 3986-encoded `name=value&…` string. This is both the
/// v1 canonicalized query string and the v3 canonical query string.
pub fn canonical_query(params: &[(String, String)]) -> String {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    sorted.sort_unstable();
    let mut out = String::with_capacity(params.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (i, (k, v)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        // Appended piece by piece: a create request has hundreds of parameters, and a
        // String per name and value was a visible part of the client's CPU per call.
        out.extend(utf8_percent_encode(k, RFC3986_RESERVED));
        out.push('=');
        out.extend(utf8_percent_encode(v, RFC3986_RESERVED));
    }
    out
}

/// Decodes an `application/x-www-form-urlencoded` string or a URL query (`+` and `%20`
/// both mean space) into ordered pairs.
pub fn decode_query(raw: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.as_bytes())
        .into_owned()
        .collect()
}

/// The timestamp format both schemes use: UTC, seconds precision, `Z` suffix.
pub fn format_timestamp(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parses a wire timestamp (`2024-01-02T03:04:05Z`; fractional seconds tolerated).
pub fn parse_timestamp(s: &str) -> Option<jiff::Timestamp> {
    s.parse::<jiff::Timestamp>().ok()
}

/// A fresh signature nonce: 32 lower-case hex characters, like the Tea SDKs send.
pub fn new_nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The API version every ECI request carries.
pub const API_VERSION: &str = "2018-08-08";

/// Lower-case hex SHA-256 of the empty body (the `x-acs-content-sha256` of every RPC call).
pub const EMPTY_BODY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_the_reference() {
        assert_eq!(
            percent_encode("echo hello world*~"),
            "echo%20hello%20world%2A~"
        );
        assert_eq!(percent_encode("a/b:c"), "a%2Fb%3Ac");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn decodes_plus_and_percent_space() {
        let p = decode_query("a=x+y&b=x%20y&c=");
        assert_eq!(
            p,
            vec![
                ("a".into(), "x y".into()),
                ("b".into(), "x y".into()),
                ("c".into(), String::new())
            ]
        );
    }

    #[test]
    fn timestamps_round_trip() {
        let t = parse_timestamp("2024-01-02T03:04:05Z").expect("valid");
        assert_eq!(format_timestamp(t), "2024-01-02T03:04:05Z");
    }
}
