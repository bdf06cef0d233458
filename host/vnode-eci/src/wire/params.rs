//! Parameter flattening ("repeat list" style) in both directions.
//!
//! Structs become `Parent.Field`, list elements `Parent.<n>` with **1-based** `n`, scalars
//! strings, absent values nothing: `Container.1.EnvironmentVar.2.Key`. The request model in
//! [`crate::model`] carries the wire names as serde attributes, so one definition drives
//! both [`to_params`] (the client) and [`from_params`] (the emulator).
//!
//! Decoding is lenient the way the real gateway is: booleans in any case (`True` from the
//! Python SDK), `1`/`1.0` for floats, list indices with gaps, unknown keys ignored. Errors
//! name the offending wire parameter (`Container.2.Cpu`), so callers can answer with
//! `MissingParameter` / `InvalidParameter` exactly as ECI does.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// What went wrong turning parameters into a typed request (or back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    /// Missing (required parameter absent) or invalid (malformed value).
    pub kind: ParamErrorKind,
    /// The wire name of the parameter, e.g. `Container.1.Cpu`.
    pub param: String,
    /// Human-readable detail (the value and what was expected).
    pub reason: String,
    located: bool,
}

/// The class of a [`ParamError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamErrorKind {
    /// A required parameter is absent.
    Missing,
    /// A parameter is present but malformed.
    Invalid,
}

impl ParamError {
    /// A malformed-value error for `param`.
    pub fn invalid(param: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            kind: ParamErrorKind::Invalid,
            param: param.into(),
            reason: reason.into(),
            located: true,
        }
    }

    /// A missing-parameter error for `param`.
    pub fn missing(param: impl Into<String>) -> Self {
        Self {
            kind: ParamErrorKind::Missing,
            param: param.into(),
            reason: String::new(),
            located: true,
        }
    }

    /// Attaches the path of the node where an unlocated error surfaced.
    fn locate(mut self, path: &str) -> Self {
        if !self.located {
            self.param = match (path.is_empty(), self.param.is_empty()) {
                (true, _) => self.param,
                (false, true) => path.to_string(),
                (false, false) => format!("{path}.{}", self.param),
            };
            self.located = true;
        }
        self
    }
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ParamErrorKind::Missing => write!(f, "missing parameter {}", self.param),
            ParamErrorKind::Invalid => {
                write!(f, "invalid parameter {}: {}", self.param, self.reason)
            }
        }
    }
}

impl std::error::Error for ParamError {}

impl de::Error for ParamError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self {
            kind: ParamErrorKind::Invalid,
            param: String::new(),
            reason: msg.to_string(),
            located: false,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Self {
            kind: ParamErrorKind::Missing,
            param: field.to_string(),
            reason: String::new(),
            located: false,
        }
    }
}

/// Flattens a value (normally a request struct from [`crate::model`]) into wire parameters.
pub fn to_params<T: Serialize + ?Sized>(value: &T) -> Result<Vec<(String, String)>, ParamError> {
    let tree = serde_json::to_value(value).map_err(|e| ParamError::invalid("", e.to_string()))?;
    let mut out = Vec::new();
    flatten(String::new(), &tree, &mut out);
    Ok(out)
}

fn flatten(prefix: String, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    use serde_json::Value;
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match value {
        Value::Null => {}
        Value::Bool(b) => out.push((prefix, b.to_string())),
        Value::Number(n) => out.push((prefix, n.to_string())),
        Value::String(s) => out.push((prefix, s.clone())),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten(join(&(i + 1).to_string()), item, out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                flatten(join(k), v, out);
            }
        }
    }
}

/// A parameter tree: dotted names split into nested maps.
#[derive(Debug)]
enum Node {
    Leaf(String),
    Branch(BTreeMap<String, Node>),
}

fn build_tree(params: &[(String, String)]) -> Result<Node, ParamError> {
    let mut root = BTreeMap::new();
    for (key, value) in params {
        let segments: Vec<&str> = key.split('.').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(ParamError::invalid(key.clone(), "empty name segment"));
        }
        let mut map = &mut root;
        for (i, seg) in segments.iter().enumerate() {
            if i + 1 == segments.len() {
                match map.get(*seg) {
                    Some(Node::Branch(_)) => {
                        return Err(ParamError::invalid(
                            key.clone(),
                            "given both as a value and as a structure",
                        ));
                    }
                    // A repeated scalar: the last one wins, as on the real gateway.
                    _ => {
                        map.insert(seg.to_string(), Node::Leaf(value.clone()));
                    }
                }
            } else {
                let entry = map
                    .entry(seg.to_string())
                    .or_insert_with(|| Node::Branch(BTreeMap::new()));
                match entry {
                    Node::Branch(m) => map = m,
                    Node::Leaf(_) => {
                        return Err(ParamError::invalid(
                            segments[..=i].join("."),
                            "given both as a value and as a structure",
                        ));
                    }
                }
            }
        }
    }
    Ok(Node::Branch(root))
}

/// Decodes wire parameters into a typed value. Unknown parameters are ignored; required
/// fields the type declares without a default produce [`ParamErrorKind::Missing`].
pub fn from_params<T: DeserializeOwned>(params: &[(String, String)]) -> Result<T, ParamError> {
    let tree = build_tree(params)?;
    T::deserialize(NodeDe {
        node: &tree,
        path: String::new(),
    })
    .map_err(|e| e.locate(""))
}

struct NodeDe<'a> {
    node: &'a Node,
    path: String,
}

impl NodeDe<'_> {
    fn leaf(&self, expected: &str) -> Result<&str, ParamError> {
        match self.node {
            Node::Leaf(s) => Ok(s),
            Node::Branch(_) => Err(ParamError::invalid(
                self.path.clone(),
                format!("expected {expected}, got a structure"),
            )),
        }
    }

    fn parse<T: std::str::FromStr>(&self, expected: &str) -> Result<T, ParamError> {
        let s = self.leaf(expected)?;
        s.trim()
            .parse::<T>()
            .map_err(|_| ParamError::invalid(self.path.clone(), format!("{s:?} is not {expected}")))
    }

    fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

macro_rules! parse_number {
    ($method:ident, $visit:ident, $ty:ty, $what:literal) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
            let v: $ty = self.parse($what)?;
            let path = self.path.clone();
            visitor
                .$visit::<ParamError>(v)
                .map_err(|e: ParamError| e.locate(&path))
        }
    };
}

impl<'de> Deserializer<'de> for NodeDe<'_> {
    type Error = ParamError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        match self.node {
            Node::Leaf(s) => visitor.visit_str(s),
            Node::Branch(_) => self.deserialize_map(visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        let s = self.leaf("a boolean")?;
        let b = if s.eq_ignore_ascii_case("true") {
            true
        } else if s.eq_ignore_ascii_case("false") {
            false
        } else {
            return Err(ParamError::invalid(
                self.path.clone(),
                format!("{s:?} is not a boolean"),
            ));
        };
        visitor.visit_bool(b)
    }

    parse_number!(deserialize_i8, visit_i8, i8, "an integer");
    parse_number!(deserialize_i16, visit_i16, i16, "an integer");
    parse_number!(deserialize_i32, visit_i32, i32, "an integer");
    parse_number!(deserialize_i64, visit_i64, i64, "an integer");
    parse_number!(deserialize_u8, visit_u8, u8, "a non-negative integer");
    parse_number!(deserialize_u16, visit_u16, u16, "a non-negative integer");
    parse_number!(deserialize_u32, visit_u32, u32, "a non-negative integer");
    parse_number!(deserialize_u64, visit_u64, u64, "a non-negative integer");
    parse_number!(deserialize_f32, visit_f32, f32, "a number");

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        let v: f64 = self.parse("a number")?;
        if !v.is_finite() {
            return Err(ParamError::invalid(
                self.path.clone(),
                "not a finite number",
            ));
        }
        visitor.visit_f64(v)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        let s = self.leaf("a string")?;
        let path = self.path.clone();
        visitor
            .visit_str::<ParamError>(s)
            .map_err(|e: ParamError| e.locate(&path))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        visitor.visit_some(self)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ParamError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ParamError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        let Node::Branch(map) = self.node else {
            return Err(ParamError::invalid(
                self.path.clone(),
                format!("expected a list ({}.1, {}.2, …)", self.path, self.path),
            ));
        };
        let mut items = Vec::with_capacity(map.len());
        for (k, v) in map {
            let index: u32 = k.parse().map_err(|_| {
                ParamError::invalid(self.child(k), "list elements need numeric indices")
            })?;
            items.push((index, k.as_str(), v));
        }
        items.sort_by_key(|(i, _, _)| *i);
        let path = self.path.clone();
        visitor
            .visit_seq(SeqDe {
                items: items.into_iter(),
                parent: &path,
            })
            .map_err(|e| e.locate(&path))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ParamError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ParamError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        let Node::Branch(map) = self.node else {
            return Err(ParamError::invalid(
                self.path.clone(),
                "expected a structure, got a value",
            ));
        };
        let path = self.path.clone();
        visitor
            .visit_map(MapDe {
                iter: map.iter(),
                parent: &path,
                pending: None,
            })
            .map_err(|e| e.locate(&path))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ParamError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ParamError> {
        let s = self.leaf("one of the allowed values")?;
        let path = self.path.clone();
        let de: de::value::StrDeserializer<'_, ParamError> = s.into_deserializer();
        visitor.visit_enum(de).map_err(|e| e.locate(&path))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        visitor.visit_unit()
    }
}

struct SeqDe<'a, I> {
    items: I,
    parent: &'a str,
}

impl<'de, 'a, I: Iterator<Item = (u32, &'a str, &'a Node)>> de::SeqAccess<'de> for SeqDe<'a, I> {
    type Error = ParamError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ParamError> {
        match self.items.next() {
            None => Ok(None),
            Some((_, key, node)) => {
                let path = format!("{}.{key}", self.parent);
                seed.deserialize(NodeDe {
                    node,
                    path: path.clone(),
                })
                .map(Some)
                .map_err(|e| e.locate(&path))
            }
        }
    }
}

struct MapDe<'a> {
    iter: std::collections::btree_map::Iter<'a, String, Node>,
    parent: &'a str,
    pending: Option<(&'a str, &'a Node)>,
}

impl<'de> de::MapAccess<'de> for MapDe<'_> {
    type Error = ParamError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ParamError> {
        match self.iter.next() {
            None => Ok(None),
            Some((k, v)) => {
                self.pending = Some((k.as_str(), v));
                let de: de::value::StrDeserializer<'_, ParamError> = k.as_str().into_deserializer();
                seed.deserialize(de).map(Some)
            }
        }
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ParamError> {
        let (key, node) = self
            .pending
            .take()
            .ok_or_else(|| ParamError::invalid(self.parent, "value without key"))?;
        let path = if self.parent.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.parent)
        };
        seed.deserialize(NodeDe {
            node,
            path: path.clone(),
        })
        .map_err(|e| e.locate(&path))
    }
}

/// Serde helpers for list parameters that travel as a JSON array string
/// (`ContainerGroupIds=["eci-a","eci-b"]`, `Command=["sh","-c","ls"]`).
pub mod json_list {
    use super::*;

    /// Serialises a list as one JSON string.
    pub fn serialize<S: serde::Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
        let json = serde_json::to_string(v).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&json)
    }

    /// Parses a JSON array string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        let raw = String::deserialize(d)?;
        if raw.trim().is_empty() {
            return Ok(Vec::new());
        }
        serde_json::from_str(&raw)
            .map_err(|_| de::Error::custom(format!("{raw:?} is not a JSON array of strings")))
    }
}

/// Serde helpers for list parameters that travel comma-separated (`VSwitchId=vsw-a,vsw-b`).
pub mod comma_list {
    use super::*;

    /// Joins with `,`.
    pub fn serialize<S: serde::Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.join(","))
    }

    /// Splits on `,`, trimming and dropping empty items.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        let raw = String::deserialize(d)?;
        Ok(raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "PascalCase", default)]
    struct Env {
        key: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<String>,
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "PascalCase", default)]
    struct Item {
        name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        cpu: Option<f64>,
        #[serde(rename = "EnvironmentVar", skip_serializing_if = "Vec::is_empty")]
        env: Vec<Env>,
        #[serde(skip_serializing_if = "Option::is_none")]
        tty: Option<bool>,
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "PascalCase", default)]
    struct Req {
        #[serde(rename = "Container", skip_serializing_if = "Vec::is_empty")]
        containers: Vec<Item>,
        #[serde(with = "json_list", skip_serializing_if = "Vec::is_empty")]
        ids: Vec<String>,
    }

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn round_trips_nested_lists() {
        let req = Req {
            containers: vec![
                Item {
                    name: "a".into(),
                    cpu: Some(1.0),
                    env: vec![],
                    tty: Some(true),
                },
                Item {
                    name: "b".into(),
                    cpu: Some(0.5),
                    env: vec![
                        Env {
                            key: "K".into(),
                            value: Some("v".into()),
                        },
                        Env {
                            key: "L".into(),
                            value: None,
                        },
                    ],
                    tty: None,
                },
            ],
            ids: vec!["eci-1".into()],
        };
        let params = to_params(&req).expect("flattens");
        assert!(params.contains(&("Container.2.EnvironmentVar.2.Key".into(), "L".into())));
        assert!(params.contains(&("Container.1.Cpu".into(), "1.0".into())));
        assert!(params.contains(&("Ids".into(), r#"["eci-1"]"#.into())));
        let back: Req = from_params(&params).expect("parses");
        assert_eq!(back, req);
    }

    #[test]
    fn lenient_scalars_and_gaps() {
        let params = p(&[
            ("Container.3.Name", "x"),
            ("Container.3.Tty", "True"),
            ("Container.1.Cpu", "2"),
        ]);
        let req: Req = from_params(&params).expect("parses");
        assert_eq!(req.containers.len(), 2);
        assert_eq!(req.containers[0].cpu, Some(2.0));
        assert_eq!(req.containers[1].tty, Some(true));
    }

    #[test]
    fn errors_name_the_parameter() {
        let err = from_params::<Req>(&p(&[("Container.2.Cpu", "lots")])).expect_err("bad float");
        assert_eq!(err.kind, ParamErrorKind::Invalid);
        assert_eq!(err.param, "Container.2.Cpu");
        let err = from_params::<Req>(&p(&[("Container.1.Tty", "maybe")])).expect_err("bad bool");
        assert_eq!(err.param, "Container.1.Tty");
        let err = from_params::<Req>(&p(&[("Ids", "not json")])).expect_err("bad json");
        assert_eq!(err.param, "Ids");
        let err = from_params::<Req>(&p(&[("Container.x.Name", "a")])).expect_err("bad index");
        assert_eq!(err.param, "Container.x");
        let err = from_params::<Req>(&p(&[("Container", "a")])).expect_err("scalar for list");
        assert_eq!(err.param, "Container");
    }

    #[test]
    fn missing_required_field_is_located() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Strict {
            #[serde(rename = "Inner")]
            inner: Vec<StrictInner>,
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct StrictInner {
            #[serde(rename = "Image")]
            image: String,
        }
        let err = from_params::<Strict>(&p(&[("Inner.1.Other", "x")])).expect_err("missing");
        assert_eq!(err.kind, ParamErrorKind::Missing);
        assert_eq!(err.param, "Inner.1.Image");
    }
}
