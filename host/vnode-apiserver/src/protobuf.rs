//! Kubernetes protobuf request bodies. kubectl 1.32's typed commands (`kubectl run`,
//! `kubectl create deployment|job|cronjob|ingress|service|role|…`, `kubectl expose`,
//! `kubectl autoscale`) send `application/vnd.kubernetes.protobuf` and have no JSON fallback.
//! The envelope is the 4-byte magic `k8s\0` followed by a `runtime.Unknown` whose `raw`
//! field holds the object.
//!
//! Objects are decoded by the field tables in [`tables`], generated from the protobuf
//! descriptors kubectl itself carries (`protobuf/gen_tables.py`): every message of every
//! stable kind (v1, v2), so a Pod's volumes, probes, security contexts, `envFrom` … decode
//! into the same JSON a JSON client would have sent. A field the tables do not know (a newer
//! client) is refused with 415 naming it, never silently dropped.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::status::ApiError;

#[rustfmt::skip]
mod tables;

/// The type of one field, as the decoder needs it.
// `Double` and `Duration` occur in no stable kind today; regenerated tables may use them.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug)]
enum Ty {
    Str,
    /// `bytes`, base64 in JSON.
    Bytes,
    /// Any varint integer (int32, int64, uint32, enums).
    Int,
    Bool,
    Double,
    /// A nested message: index into [`tables::MESSAGES`].
    Msg(u16),
    /// `map<string, V>`.
    Map(&'static Ty),
    /// `resource.Quantity { string = 1 }` → its string.
    Quantity,
    /// `intstr.IntOrString { type = 1, intVal = 2, strVal = 3 }`.
    IntOrStr,
    /// `metav1.Time { seconds = 1, nanos = 2 }` → RFC 3339 (seconds precision, as Go).
    Time,
    /// `metav1.MicroTime` → RFC 3339 with microseconds.
    MicroTime,
    /// `metav1.Duration { duration = 1 }` (nanoseconds) → Go duration string.
    Duration,
    /// `runtime.RawExtension`/`FieldsV1 { raw = 1 }`: JSON bytes.
    RawJson,
    /// A `[]string` wrapped in a message (`ExtraValue { items = 1 }`).
    StrList,
}

/// One field of a message table.
#[derive(Clone, Copy, Debug)]
struct Field {
    num: u32,
    /// The JSON name (Kubernetes' proto names are the JSON names).
    name: &'static str,
    ty: Ty,
    repeated: bool,
    /// Go embeds it with `json:",inline"`: its members belong to the parent object.
    inline: bool,
    /// A pointer field whose zero value is meaningful (`replicas: 0`); other zero scalars
    /// are non-pointer fields Go always writes, i.e. fields the client never set.
    keep_zero: bool,
}

impl Field {
    const DEFAULT: Field = Field {
        num: 0,
        name: "",
        ty: Ty::Str,
        repeated: false,
        inline: false,
        keep_zero: false,
    };
}

/// One message table.
#[derive(Debug)]
struct Message {
    name: &'static str,
    fields: &'static [Field],
}

#[derive(Debug)]
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed64(u64),
    Fixed32(u32),
}

/// Nesting deeper than this is refused (the tables are far shallower).
const MAX_DEPTH: usize = 64;

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

fn fixed<const N: usize>(buf: &[u8], pos: &mut usize) -> Result<[u8; N], ApiError> {
    let end = pos.checked_add(N).ok_or_else(|| bad("length"))?;
    let b: [u8; N] = buf
        .get(*pos..end)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| bad("truncated fixed field"))?;
    *pos = end;
    Ok(b)
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
            1 => Wire::Fixed64(u64::from_le_bytes(fixed::<8>(buf, &mut pos)?)),
            5 => Wire::Fixed32(u32::from_le_bytes(fixed::<4>(buf, &mut pos)?)),
            _ => return Err(bad("unsupported wire type")),
        };
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

fn int(w: &Wire<'_>) -> Result<i64, ApiError> {
    match w {
        // proto2 int32/int64 are two's complement varints.
        Wire::Varint(v) => Ok(*v as i64),
        _ => Err(bad("expected an integer")),
    }
}

/// Decodes a protobuf body into the JSON object a JSON client would have sent.
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
    let Some(&(_, _, index)) = tables::KINDS
        .iter()
        .find(|(av, k, _)| *av == api_version && *k == kind)
    else {
        return Err(ApiError::unsupported_media_type(&format!(
            "application/vnd.kubernetes.protobuf for {api_version} {kind} (this server decodes protobuf for the built-in stable kinds only; send JSON, e.g. kubectl apply -f)"
        )));
    };
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    if let Value::Object(decoded) = message(raw, index, &kind, 0)? {
        obj.extend(decoded);
    }
    // Go writes the (non-pointer) status of a new object as an empty message; the server
    // resets status on create anyway, and the JSON a client sends omits it.
    if obj.get("status").is_some_and(|s| s == &json!({})) {
        obj.remove("status");
    }
    Ok(Value::Object(obj))
}

/// Whether a value is Go's zero value (what a non-pointer field the client never set looks
/// like): `0`, empty bytes, or a message of zero values.
fn is_zero(w: &Wire<'_>, depth: usize) -> bool {
    match w {
        Wire::Varint(v) => *v == 0,
        Wire::Fixed64(v) => *v == 0,
        Wire::Fixed32(v) => *v == 0,
        Wire::Bytes([]) => true,
        Wire::Bytes(b) => {
            depth < 8 && fields(b).is_ok_and(|fs| fs.iter().all(|(_, x)| is_zero(x, depth + 1)))
        }
    }
}

/// Decodes message `index` of the tables; `path` names it in errors.
fn message(buf: &[u8], index: u16, path: &str, depth: usize) -> Result<Value, ApiError> {
    if depth > MAX_DEPTH {
        return Err(bad("nested too deeply"));
    }
    let table = tables::MESSAGES
        .get(usize::from(index))
        .ok_or_else(|| ApiError::internal(format!("protobuf table {index} missing")))?;
    let mut out = Map::new();
    for (num, w) in fields(buf)? {
        let Some(field) = table.fields.iter().find(|f| u64::from(f.num) == num) else {
            if is_zero(&w, 0) {
                // A non-pointer field the client left at its zero value.
                continue;
            }
            return Err(ApiError::unsupported_media_type(&format!(
                "application/vnd.kubernetes.protobuf with field {num} of {path} ({}), which this server does not know; send JSON, e.g. kubectl apply -f",
                table.name
            )));
        };
        let here = format!("{path}.{}", field.name);
        if let Ty::Map(value_ty) = field.ty {
            let (k, v) = map_entry(&w, *value_ty, &here, depth)?;
            let m = out.entry(field.name).or_insert_with(|| json!({}));
            if let Some(m) = m.as_object_mut() {
                m.insert(k, v);
            }
            continue;
        }
        if field.repeated {
            let list = out.entry(field.name).or_insert_with(|| json!([]));
            let Some(list) = list.as_array_mut() else {
                continue;
            };
            match (field.ty, &w) {
                // A packed repeated integer.
                (Ty::Int | Ty::Bool, Wire::Bytes(b)) => {
                    let mut pos = 0;
                    while pos < b.len() {
                        let n = varint(b, &mut pos)? as i64;
                        list.push(if let Ty::Bool = field.ty {
                            json!(n != 0)
                        } else {
                            json!(n)
                        });
                    }
                }
                // An element of a list is never "absent": `apiGroups: [""]` is the core group.
                _ => list.push(element(&w, field.ty, &here, depth)?),
            }
            continue;
        }
        let Some(v) = single(&w, field, &here, depth)? else {
            continue;
        };
        if field.inline {
            if let Value::Object(members) = v {
                out.extend(members);
            }
        } else {
            out.insert(field.name.to_string(), v);
        }
    }
    Ok(Value::Object(out))
}

/// A non-repeated field's value, `None` where it is a zero the client did not set.
fn single(
    w: &Wire<'_>,
    field: &Field,
    path: &str,
    depth: usize,
) -> Result<Option<Value>, ApiError> {
    let v = element(w, field.ty, path, depth)?;
    let zero = match (&field.ty, &v) {
        (Ty::Str | Ty::Bytes, Value::String(s)) => s.is_empty(),
        (Ty::Int | Ty::IntOrStr, Value::Number(n)) => n.as_i64() == Some(0),
        (Ty::Double, Value::Number(n)) => n.as_f64() == Some(0.0),
        (Ty::Bool, Value::Bool(b)) => !b,
        (_, Value::Null) => return Ok(None),
        _ => false,
    };
    Ok((!zero || field.keep_zero).then_some(v))
}

/// One value of type `ty` (a list element, a map value or a single field).
fn element(w: &Wire<'_>, ty: Ty, path: &str, depth: usize) -> Result<Value, ApiError> {
    Ok(match ty {
        Ty::Str => json!(string(w)?),
        Ty::Bytes => json!(base64::engine::general_purpose::STANDARD.encode(bytes(w)?)),
        Ty::Int => json!(int(w)?),
        Ty::Bool => json!(int(w)? != 0),
        Ty::Double => match w {
            Wire::Fixed64(v) => json!(f64::from_bits(*v)),
            Wire::Fixed32(v) => json!(f32::from_bits(*v)),
            _ => return Err(bad("expected a double")),
        },
        Ty::Msg(index) => message(bytes(w)?, index, path, depth + 1)?,
        Ty::Map(_) => {
            return Err(ApiError::internal(format!(
                "protobuf table error at {path}: a map inside a list"
            )));
        }
        Ty::Quantity => {
            let mut s = String::new();
            for (f, x) in fields(bytes(w)?)? {
                if f == 1 {
                    s = string(&x)?;
                }
            }
            json!(s)
        }
        Ty::IntOrStr => {
            let (mut kind, mut i, mut s) = (0, 0, String::new());
            for (f, x) in fields(bytes(w)?)? {
                match f {
                    1 => kind = int(&x)?,
                    2 => i = int(&x)?,
                    3 => s = string(&x)?,
                    _ => {}
                }
            }
            if kind == 1 { json!(s) } else { json!(i) }
        }
        Ty::Time | Ty::MicroTime => {
            let (mut seconds, mut nanos) = (0i64, 0i64);
            for (f, x) in fields(bytes(w)?)? {
                match f {
                    1 => seconds = int(&x)?,
                    2 => nanos = int(&x)?,
                    _ => {}
                }
            }
            if seconds == 0 && nanos == 0 {
                // Go's zero time marshals as `null`.
                return Ok(Value::Null);
            }
            let nanos = i32::try_from(nanos).map_err(|_| bad("time nanoseconds out of range"))?;
            let ts = jiff::Timestamp::new(seconds, nanos).map_err(|_| bad("time out of range"))?;
            if let Ty::MicroTime = ty {
                json!(ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
            } else {
                json!(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            }
        }
        Ty::Duration => {
            let mut nanos = 0i64;
            for (f, x) in fields(bytes(w)?)? {
                if f == 1 {
                    nanos = int(&x)?;
                }
            }
            json!(go_duration(nanos))
        }
        Ty::RawJson => {
            let mut raw: &[u8] = &[];
            for (f, x) in fields(bytes(w)?)? {
                if f == 1 {
                    raw = bytes(&x)?;
                }
            }
            if raw.is_empty() {
                return Ok(Value::Null);
            }
            serde_json::from_slice(raw).map_err(|e| bad(&format!("{path}: embedded JSON: {e}")))?
        }
        Ty::StrList => {
            let mut items = Vec::new();
            for (f, x) in fields(bytes(w)?)? {
                if f == 1 {
                    items.push(json!(string(&x)?));
                }
            }
            Value::Array(items)
        }
    })
}

/// One `map<string, V>` entry (key = 1, value = 2); a missing value is V's zero value.
fn map_entry(w: &Wire<'_>, ty: Ty, path: &str, depth: usize) -> Result<(String, Value), ApiError> {
    let mut key = String::new();
    let mut value = None;
    for (f, x) in fields(bytes(w)?)? {
        match f {
            1 => key = string(&x)?,
            2 => value = Some(element(&x, ty, path, depth)?),
            _ => {}
        }
    }
    let value = match value {
        Some(v) => v,
        None => element(&Wire::Bytes(&[]), ty, path, depth).unwrap_or(Value::Null),
    };
    Ok((key, value))
}

/// Formats nanoseconds as Go's `time.Duration.String()` does (`1h2m3.5s`, `0s`, `150ms`).
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n < 1_000_000_000 {
        return match n {
            n if n < 1_000 => format!("{sign}{n}ns"),
            n if n < 1_000_000 => format!("{sign}{}µs", trim(n as f64 / 1e3)),
            n => format!("{sign}{}ms", trim(n as f64 / 1e6)),
        };
    }
    let (h, rest) = (n / 3_600_000_000_000, n % 3_600_000_000_000);
    let (m, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let s = trim(rest as f64 / 1e9);
    match (h, m) {
        (0, 0) => format!("{sign}{s}s"),
        (0, m) => format!("{sign}{m}m{s}s"),
        (h, m) => format!("{sign}{h}h{m}m{s}s"),
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.9}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
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
        let widget = [
            b"k8s\0".to_vec(),
            field(
                1,
                &[field(1, b"example.com/v1"), field(2, b"Widget")].concat(),
            ),
        ]
        .concat();
        assert_eq!(decode(&widget).expect_err("unsupported").code, 415);
    }

    fn varint_field(n: u64, v: u8) -> Vec<u8> {
        vec![(n << 3) as u8, v]
    }

    fn envelope(api_version: &[u8], kind: &[u8], raw: &[u8]) -> Vec<u8> {
        let type_meta = [field(1, api_version), field(2, kind)].concat();
        [b"k8s\0".to_vec(), field(1, &type_meta), field(2, raw)].concat()
    }

    #[test]
    fn decodes_a_role_and_a_deployment_from_tables() {
        let rule = [field(1, b"get"), field(2, b""), field(3, b"pods")].concat();
        let raw = [field(1, &field(1, b"r1")), field(2, &rule)].concat();
        let v = decode(&envelope(b"rbac.authorization.k8s.io/v1", b"Role", &raw)).expect("role");
        assert_eq!(
            v,
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r1"},
                   "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]})
        );
        let container = [field(1, b"web"), field(2, b"nginx"), field(8, b"")].concat();
        let pod_spec = field(2, &container);
        let labels = field(11, &[field(1, b"app"), field(2, b"d1")].concat());
        let template = [
            field(1, &[labels.clone(), field(8, b"")].concat()),
            field(2, &pod_spec),
        ]
        .concat();
        let selector = field(1, &[field(1, b"app"), field(2, b"d1")].concat());
        let spec = [
            varint_field(1, 2),
            field(2, &selector),
            field(3, &template),
            field(4, b""),
        ]
        .concat();
        let raw = [field(1, &field(1, b"d1")), field(2, &spec), field(3, b"")].concat();
        let v = decode(&envelope(b"apps/v1", b"Deployment", &raw)).expect("deployment");
        assert_eq!(v["spec"]["replicas"], 2);
        assert_eq!(v["spec"]["selector"]["matchLabels"]["app"], "d1");
        assert_eq!(
            v["spec"]["template"]["metadata"],
            json!({"labels": {"app": "d1"}})
        );
        assert_eq!(
            v["spec"]["template"]["spec"]["containers"],
            json!([{"name": "web", "image": "nginx", "resources": {}}])
        );
        assert!(v.get("status").is_none());
        // A field the table does not know is refused, not dropped.
        let raw = [field(1, &field(1, b"d2")), field(2, &field(15, b"x"))].concat();
        let e = decode(&envelope(b"apps/v1", b"Deployment", &raw)).expect_err("unknown field");
        assert_eq!(e.code, 415);
        assert!(
            e.message.contains("field 15 of Deployment.spec"),
            "{}",
            e.message
        );
    }
}
