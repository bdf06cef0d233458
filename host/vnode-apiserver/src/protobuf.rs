//! Kubernetes protobuf request bodies, for the few kinds kubectl's typed commands create
//! (`kubectl create namespace|configmap|secret|serviceaccount`): kubectl sends those as
//! `application/vnd.kubernetes.protobuf` and has no JSON fallback. The envelope is the
//! 4-byte magic `k8s\0` followed by a `runtime.Unknown` whose `raw` field holds the object.
//! Other kinds get 415, and their commands (`kubectl run`, `create deployment`) need
//! `kubectl apply -f` instead.

use serde_json::{Map, Value, json};

use crate::status::ApiError;

#[derive(Debug)]
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn bad(why: &str) -> ApiError {
    ApiError::bad_request(format!(
        "the body of the request could not be decoded as protobuf: {why}"
    ))
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, ApiError> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or_else(|| bad("truncated varint"))?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err(bad("varint too long"))
}

/// Splits a message into (field number, value) pairs.
fn fields(buf: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, ApiError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (field, wire) = (key >> 3, key & 7);
        let v = match wire {
            0 => Wire::Varint(varint(buf, &mut pos)?),
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).map_err(|_| bad("length"))?;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or_else(|| bad("truncated field"))?;
                let b = &buf[pos..end];
                pos = end;
                Wire::Bytes(b)
            }
            1 => {
                pos += 8;
                Wire::Fixed
            }
            5 => {
                pos += 4;
                Wire::Fixed
            }
            _ => return Err(bad("unsupported wire type")),
        };
        if pos > buf.len() {
            return Err(bad("truncated fixed field"));
        }
        out.push((field, v));
    }
    Ok(out)
}

fn string(w: &Wire<'_>) -> Result<String, ApiError> {
    match w {
        Wire::Bytes(b) => String::from_utf8(b.to_vec()).map_err(|_| bad("invalid UTF-8")),
        _ => Err(bad("expected a string")),
    }
}

fn bytes<'a>(w: &Wire<'a>) -> Result<&'a [u8], ApiError> {
    match w {
        Wire::Bytes(b) => Ok(b),
        _ => Err(bad("expected bytes")),
    }
}

/// A `map<string, string>` (or bytes, base64-encoded as JSON does) entry.
fn map_entry(w: &Wire<'_>, base64_values: bool) -> Result<(String, Value), ApiError> {
    use base64::Engine as _;
    let mut k = String::new();
    let mut v = Value::String(String::new());
    for (f, x) in fields(bytes(w)?)? {
        match f {
            1 => k = string(&x)?,
            2 if base64_values => {
                v = json!(base64::engine::general_purpose::STANDARD.encode(bytes(&x)?))
            }
            2 => v = json!(string(&x)?),
            _ => {}
        }
    }
    Ok((k, v))
}

fn insert_map(obj: &mut Map<String, Value>, key: &str, entry: (String, Value)) {
    let m = obj.entry(key.to_string()).or_insert_with(|| json!({}));
    if let Some(m) = m.as_object_mut() {
        m.insert(entry.0, entry.1);
    }
}

fn object_meta(buf: &[u8]) -> Result<Value, ApiError> {
    let mut m = Map::new();
    for (f, w) in fields(buf)? {
        match f {
            1 => {
                m.insert("name".into(), json!(string(&w)?));
            }
            2 => {
                m.insert("generateName".into(), json!(string(&w)?));
            }
            3 => {
                m.insert("namespace".into(), json!(string(&w)?));
            }
            6 => {
                m.insert("resourceVersion".into(), json!(string(&w)?));
            }
            11 => insert_map(&mut m, "labels", map_entry(&w, false)?),
            12 => insert_map(&mut m, "annotations", map_entry(&w, false)?),
            14 => {
                let list = m.entry("finalizers").or_insert_with(|| json!([]));
                if let Some(a) = list.as_array_mut() {
                    a.push(json!(string(&w)?));
                }
            }
            _ => {}
        }
    }
    Ok(Value::Object(m))
}

fn object_reference(buf: &[u8]) -> Result<Value, ApiError> {
    let mut m = Map::new();
    for (f, w) in fields(buf)? {
        let key = match f {
            1 => "kind",
            2 => "namespace",
            3 => "name",
            4 => "uid",
            5 => "apiVersion",
            _ => continue,
        };
        m.insert(key.into(), json!(string(&w)?));
    }
    Ok(Value::Object(m))
}

/// Decodes a protobuf body into JSON for the kinds kubectl's typed create commands send.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let payload = body
        .strip_prefix(b"k8s\0")
        .ok_or_else(|| bad("missing the k8s magic prefix"))?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (f, w) in fields(payload)? {
        match f {
            1 => {
                for (tf, tw) in fields(bytes(&w)?)? {
                    match tf {
                        1 => api_version = string(&tw)?,
                        2 => kind = string(&tw)?,
                        _ => {}
                    }
                }
            }
            2 => raw = bytes(&w)?,
            _ => {}
        }
    }
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    let flds = fields(raw)?;
    for (f, w) in &flds {
        if *f == 1 {
            obj.insert("metadata".into(), object_meta(bytes(w)?)?);
        }
    }
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "ConfigMap") => {
            for (f, w) in &flds {
                match f {
                    2 => insert_map(&mut obj, "data", map_entry(w, false)?),
                    3 => insert_map(&mut obj, "binaryData", map_entry(w, true)?),
                    4 => {
                        obj.insert("immutable".into(), json!(matches!(w, Wire::Varint(1))));
                    }
                    _ => {}
                }
            }
        }
        ("v1", "Secret") => {
            for (f, w) in &flds {
                match f {
                    2 => insert_map(&mut obj, "data", map_entry(w, true)?),
                    3 => {
                        obj.insert("type".into(), json!(string(w)?));
                    }
                    4 => insert_map(&mut obj, "stringData", map_entry(w, false)?),
                    5 => {
                        obj.insert("immutable".into(), json!(matches!(w, Wire::Varint(1))));
                    }
                    _ => {}
                }
            }
        }
        ("v1", "Namespace") => {
            for (f, w) in &flds {
                if *f == 2 {
                    let mut finalizers = Vec::new();
                    for (sf, sw) in fields(bytes(w)?)? {
                        if sf == 1 {
                            finalizers.push(json!(string(&sw)?));
                        }
                    }
                    obj.insert("spec".into(), json!({ "finalizers": finalizers }));
                }
            }
        }
        ("v1", "ServiceAccount") => {
            for (f, w) in &flds {
                match f {
                    2 => {
                        let r = object_reference(bytes(w)?)?;
                        let list = obj.entry("secrets").or_insert_with(|| json!([]));
                        if let Some(a) = list.as_array_mut() {
                            a.push(r);
                        }
                    }
                    3 => {
                        let mut name = String::new();
                        for (sf, sw) in fields(bytes(w)?)? {
                            if sf == 1 {
                                name = string(&sw)?;
                            }
                        }
                        let list = obj.entry("imagePullSecrets").or_insert_with(|| json!([]));
                        if let Some(a) = list.as_array_mut() {
                            a.push(json!({ "name": name }));
                        }
                    }
                    4 => {
                        obj.insert(
                            "automountServiceAccountToken".into(),
                            json!(matches!(w, Wire::Varint(1))),
                        );
                    }
                    _ => {}
                }
            }
        }
        ("authentication.k8s.io/v1", "TokenRequest") => {
            // `kubectl create token`: TokenRequestSpec{audiences=1, boundObjectRef=3,
            // expirationSeconds=4}.
            for (f, w) in &flds {
                if *f != 2 {
                    continue;
                }
                let mut spec = Map::new();
                let mut audiences = Vec::new();
                for (sf, sw) in fields(bytes(w)?)? {
                    match (sf, &sw) {
                        (1, _) => audiences.push(json!(string(&sw)?)),
                        (3, _) => {
                            let mut r = Map::new();
                            for (rf, rw) in fields(bytes(&sw)?)? {
                                let key = match rf {
                                    1 => "kind",
                                    2 => "apiVersion",
                                    3 => "name",
                                    4 => "uid",
                                    _ => continue,
                                };
                                r.insert(key.into(), json!(string(&rw)?));
                            }
                            spec.insert("boundObjectRef".into(), Value::Object(r));
                        }
                        (4, Wire::Varint(n)) => {
                            spec.insert("expirationSeconds".into(), json!(n));
                        }
                        _ => {}
                    }
                }
                spec.insert("audiences".into(), Value::Array(audiences));
                obj.insert("spec".into(), Value::Object(spec));
            }
        }
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => {
            // `kubectl auth can-i`: spec{resourceAttributes=1{namespace=1, verb=2, group=3,
            // version=4, resource=5, subresource=6, name=7}, nonResourceAttributes=2{path=1,
            // verb=2}}.
            for (f, w) in &flds {
                if *f != 2 {
                    continue;
                }
                let mut spec = Map::new();
                for (sf, sw) in fields(bytes(w)?)? {
                    let (key, names): (&str, &[&str]) = match sf {
                        1 => (
                            "resourceAttributes",
                            &[
                                "namespace",
                                "verb",
                                "group",
                                "version",
                                "resource",
                                "subresource",
                                "name",
                            ],
                        ),
                        2 => ("nonResourceAttributes", &["path", "verb"]),
                        _ => continue,
                    };
                    let mut attrs = Map::new();
                    for (af, aw) in fields(bytes(&sw)?)? {
                        let Some(name) = usize::try_from(af)
                            .ok()
                            .and_then(|i| i.checked_sub(1))
                            .and_then(|i| names.get(i))
                        else {
                            continue;
                        };
                        if let Wire::Bytes(_) = aw {
                            attrs.insert((*name).into(), json!(string(&aw)?));
                        }
                    }
                    spec.insert(key.into(), Value::Object(attrs));
                }
                obj.insert("spec".into(), Value::Object(spec));
            }
        }
        _ => {
            return Err(ApiError::unsupported_media_type(&format!(
                "application/vnd.kubernetes.protobuf for {kind} (only Namespace, ConfigMap, Secret, ServiceAccount, TokenRequest and SelfSubjectAccessReview; send JSON, e.g. kubectl apply -f)"
            )));
        }
    }
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(n << 3 | 2) as u8, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn decodes_a_configmap_like_kubectl_sends() {
        let meta = [
            field(1, b"cfg"),
            field(11, &[field(1, b"app"), field(2, b"web")].concat()),
        ]
        .concat();
        let entry = [field(1, b"k"), field(2, b"v")].concat();
        let raw = [field(1, &meta), field(2, &entry)].concat();
        let type_meta = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let body = [b"k8s\0".to_vec(), field(1, &type_meta), field(2, &raw)].concat();
        let v = decode(&body).expect("decodes");
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "labels": {"app": "web"}}, "data": {"k": "v"}})
        );
        assert_eq!(decode(b"nope").expect_err("no magic").code, 400);
        let pod = [
            b"k8s\0".to_vec(),
            field(1, &[field(1, b"v1"), field(2, b"Pod")].concat()),
        ]
        .concat();
        assert_eq!(decode(&pod).expect_err("unsupported").code, 415);
    }
}
