//! The two ECI signature schemes.
//!
//! * **v1** (`SignatureMethod=HMAC-SHA1`, `SignatureVersion=1.0`): every parameter except
//!   `Signature` is canonicalised into a sorted query string, and
//!   `Base64(HMAC-SHA1(secret + "&", METHOD&%2F&enc(query)))` goes into the `Signature` parameter.
//! * **v3** (`ACS3-HMAC-SHA256`): a canonical request over method, path, query, the signed
//!   headers and the payload hash; `hex(HMAC-SHA256(secret, "ACS3-HMAC-SHA256\n" + hex(SHA256(req))))`
//!   goes into the `Authorization` header.
//!
//! The functions here are used by the client to sign and by the emulator to verify, and
//! are checked against the official test vectors below.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::{canonical_query, percent_encode};

/// The `Authorization` scheme name of signature v3.
pub const V3_ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// v1 string to sign: `METHOD&%2F&percentEncode(canonicalized query)`. `params` must not
/// contain `Signature`.
pub fn v1_string_to_sign(method: &str, params: &[(String, String)]) -> String {
    format!("{method}&%2F&{}", percent_encode(&canonical_query(params)))
}

/// v1 signature: Base64(HMAC-SHA1(key = secret + "&", string_to_sign)).
pub fn v1_signature(secret: &str, string_to_sign: &str) -> String {
    use base64::Engine as _;
    let key = format!("{secret}&");
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The inputs of a v3 canonical request.
#[derive(Debug, Clone, Copy)]
pub struct V3Request<'a> {
    /// HTTP method, upper case.
    pub method: &'a str,
    /// Path (`/` for every RPC call).
    pub path: &'a str,
    /// Decoded query parameters.
    pub query: &'a [(String, String)],
    /// The signed headers as (lower-case name, value); order does not matter.
    pub headers: &'a [(String, String)],
    /// Lower-case hex SHA-256 of the body (`x-acs-content-sha256`).
    pub payload_sha256: &'a str,
}

impl V3Request<'_> {
    /// `h1;h2;…`: the sorted, lower-case signed header names.
    pub fn signed_headers(&self) -> String {
        let mut names: Vec<String> = self
            .headers
            .iter()
            .map(|(k, _)| k.to_ascii_lowercase())
            .collect();
        names.sort_unstable();
        names.dedup();
        names.join(";")
    }

    /// The canonical request string.
    pub fn canonical_request(&self) -> String {
        self.canonical_request_with(&canonical_query(self.query))
    }

    /// The canonical request string, with `canonical_query` =
    /// [`canonical_query`]`(self.query)` already computed (the client also sends it as the
    /// URL's query, so it is built once per call).
    pub fn canonical_request_with(&self, canonical_query: &str) -> String {
        let mut headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        headers.sort();
        // Several values for one name are comma-joined in sorted order.
        let mut canonical_headers = String::new();
        let mut i = 0;
        while i < headers.len() {
            let name = &headers[i].0;
            let mut values = vec![headers[i].1.as_str()];
            let mut j = i + 1;
            while j < headers.len() && &headers[j].0 == name {
                values.push(headers[j].1.as_str());
                j += 1;
            }
            canonical_headers.push_str(name);
            canonical_headers.push(':');
            canonical_headers.push_str(&values.join(","));
            canonical_headers.push('\n');
            i = j;
        }
        let path: String = self
            .path
            .split('/')
            .map(percent_encode)
            .collect::<Vec<_>>()
            .join("/");
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            self.method,
            path,
            canonical_query,
            canonical_headers,
            self.signed_headers(),
            self.payload_sha256
        )
    }

    /// `ACS3-HMAC-SHA256\n` + hex(SHA-256(canonical request)).
    pub fn string_to_sign(&self) -> String {
        format!(
            "{V3_ALGORITHM}\n{}",
            sha256_hex(self.canonical_request().as_bytes())
        )
    }

    /// hex(HMAC-SHA256(secret, string to sign)).
    pub fn signature(&self, secret: &str) -> String {
        v3_signature(secret, &self.string_to_sign())
    }

    /// The full `Authorization` header value.
    pub fn authorization(&self, access_key_id: &str, secret: &str) -> String {
        self.authorization_with(&canonical_query(self.query), access_key_id, secret)
    }

    /// [`V3Request::authorization`] with the canonical query string already computed
    /// (see [`V3Request::canonical_request_with`]).
    pub fn authorization_with(
        &self,
        canonical_query: &str,
        access_key_id: &str,
        secret: &str,
    ) -> String {
        let string_to_sign = format!(
            "{V3_ALGORITHM}\n{}",
            sha256_hex(self.canonical_request_with(canonical_query).as_bytes())
        );
        format!(
            "{V3_ALGORITHM} Credential={access_key_id},SignedHeaders={},Signature={}",
            self.signed_headers(),
            v3_signature(secret, &string_to_sign)
        )
    }
}

/// hex(HMAC-SHA256(secret, string_to_sign)).
pub fn v3_signature(secret: &str, string_to_sign: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A parsed `Authorization: ACS3-HMAC-SHA256 Credential=…,SignedHeaders=…,Signature=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V3Authorization {
    /// The access key id.
    pub credential: String,
    /// Lower-case signed header names, in the order given.
    pub signed_headers: Vec<String>,
    /// Hex signature.
    pub signature: String,
}

/// Parses a v3 `Authorization` header; `None` if it is not well formed.
pub fn parse_v3_authorization(value: &str) -> Option<V3Authorization> {
    let rest = value.trim().strip_prefix(V3_ALGORITHM)?.trim_start();
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => credential = Some(v.to_string()),
            "SignedHeaders" => {
                signed = Some(
                    v.split(';')
                        .filter(|s| !s.is_empty())
                        .map(|s| s.to_ascii_lowercase())
                        .collect(),
                )
            }
            "Signature" => signature = Some(v.to_string()),
            _ => {}
        }
    }
    Some(V3Authorization {
        credential: credential?,
        signed_headers: signed?,
        signature: signature?,
    })
}

/// Constant-time comparison of two signatures.
pub fn signatures_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn v1_official_ecs_vector() {
        let params = p(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ]);
        let sts = v1_string_to_sign("GET", &params);
        assert_eq!(
            sts,
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        assert_eq!(
            v1_signature("testsecret", &sts),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
    }

    #[test]
    fn v1_eci_post_vector() {
        let params = p(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeContainerGroups"),
            ("ContainerGroupIds", r#"["eci-abc","eci-def"]"#),
            ("Format", "JSON"),
            ("Limit", "20"),
            ("RegionId", "cn-hangzhou"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2024-01-02T03:04:05Z"),
            ("Version", "2018-08-08"),
        ]);
        assert_eq!(
            v1_signature("testsecret", &v1_string_to_sign("POST", &params)),
            "rQtbq8zuSZnMpXzApZ7p7IqebuY="
        );
    }

    #[test]
    fn v1_empty_value_vector() {
        let params = p(&[
            ("AccessKeyId", "testid"),
            ("Action", "DeleteContainerGroup"),
            ("ContainerGroupId", "eci-bp1abcdefghij0123456"),
            ("Format", "JSON"),
            ("RegionId", "cn-hangzhou"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "c0ffee00-0000-4000-8000-000000000001"),
            ("SignatureType", ""),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2024-01-02T03:04:05Z"),
            ("Version", "2018-08-08"),
        ]);
        assert_eq!(
            v1_signature("testsecret", &v1_string_to_sign("GET", &params)),
            "K6RvfkghU5Mhtz1AgV8pHXGoRbA="
        );
    }

    #[test]
    fn v3_official_ecs_vector() {
        let query = p(&[
            (
                "ImageId",
                "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
            ),
            ("RegionId", "cn-shanghai"),
        ]);
        let headers = p(&[
            ("host", "ecs.cn-shanghai.aliyuncs.com"),
            ("x-acs-action", "RunInstances"),
            ("x-acs-content-sha256", crate::wire::EMPTY_BODY_SHA256),
            ("x-acs-date", "2023-10-26T10:22:32Z"),
            ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
            ("x-acs-version", "2014-05-26"),
        ]);
        let req = V3Request {
            method: "POST",
            path: "/",
            query: &query,
            headers: &headers,
            payload_sha256: crate::wire::EMPTY_BODY_SHA256,
        };
        assert_eq!(
            sha256_hex(req.canonical_request().as_bytes()),
            "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
        );
        assert_eq!(
            req.signature("YourAccessKeySecret"),
            "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
        );
    }

    #[test]
    fn v3_eci_create_vector() {
        let query = p(&[
            ("RegionId", "cn-hangzhou"),
            ("ContainerGroupName", "demo-1"),
            ("Container.1.Name", "app"),
            ("Container.1.Image", "nginx:1.25"),
            ("Container.1.Cpu", "0.5"),
            ("Container.1.Memory", "1.0"),
            ("Container.1.Arg.1", "echo hello world*~"),
            ("Tag.1.Key", "env"),
            ("Tag.1.Value", "test/ci"),
        ]);
        assert_eq!(
            canonical_query(&query),
            "Container.1.Arg.1=echo%20hello%20world%2A~&Container.1.Cpu=0.5&Container.1.Image=nginx%3A1.25&Container.1.Memory=1.0&Container.1.Name=app&ContainerGroupName=demo-1&RegionId=cn-hangzhou&Tag.1.Key=env&Tag.1.Value=test%2Fci"
        );
        let headers = p(&[
            ("host", "127.0.0.1:8080"),
            ("x-acs-action", "CreateContainerGroup"),
            ("x-acs-version", "2018-08-08"),
            ("x-acs-date", "2024-01-02T03:04:05Z"),
            ("x-acs-signature-nonce", "0123456789abcdef0123456789abcdef"),
            ("x-acs-content-sha256", crate::wire::EMPTY_BODY_SHA256),
        ]);
        let req = V3Request {
            method: "POST",
            path: "/",
            query: &query,
            headers: &headers,
            payload_sha256: crate::wire::EMPTY_BODY_SHA256,
        };
        assert_eq!(
            sha256_hex(req.canonical_request().as_bytes()),
            "4a4d1bec6afddda809af360bcca3658b9caaaedfe23755a53e94f458490ace42"
        );
        assert_eq!(
            req.signature("testsecret"),
            "1734701a5b5fff5ca294579b046279226ce8dce88e9c1c26522a575174edc8c8"
        );
    }

    #[test]
    fn v3_python_style_vector() {
        let query = p(&[
            ("RegionId", "cn-hangzhou"),
            ("Limit", "20"),
            ("Tag.1.Key", "env"),
            ("Tag.1.Value", "test"),
            ("ContainerGroupIds", r#"["eci-abc"]"#),
        ]);
        let headers = p(&[
            ("accept", "application/json"),
            ("host", "127.0.0.1:8080"),
            (
                "user-agent",
                "AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2",
            ),
            ("x-acs-action", "DescribeContainerGroups"),
            ("x-acs-content-sha256", crate::wire::EMPTY_BODY_SHA256),
            ("x-acs-date", "2024-01-02T03:04:05Z"),
            ("x-acs-signature-nonce", "fedcba9876543210fedcba9876543210"),
            ("x-acs-version", "2018-08-08"),
        ]);
        let req = V3Request {
            method: "POST",
            path: "/",
            query: &query,
            headers: &headers,
            payload_sha256: crate::wire::EMPTY_BODY_SHA256,
        };
        assert_eq!(
            req.signed_headers(),
            "accept;host;user-agent;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
        );
        assert_eq!(
            req.signature("testsecret"),
            "9bc15299ab31c1d34e1652ba7734e9dab2be9920e251fe3f55b8a052d978f1a2"
        );
    }

    #[test]
    fn parses_authorization_header() {
        let a = parse_v3_authorization(
            "ACS3-HMAC-SHA256 Credential=ak,SignedHeaders=host;x-acs-date,Signature=abc",
        )
        .expect("well formed");
        assert_eq!(a.credential, "ak");
        assert_eq!(a.signed_headers, vec!["host", "x-acs-date"]);
        assert_eq!(a.signature, "abc");
        assert!(parse_v3_authorization("ACS3-HMAC-SHA256 Credential=ak").is_none());
        assert!(parse_v3_authorization("Bearer x").is_none());
    }
}
