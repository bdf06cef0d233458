//! Implementation detail of `vnode-plugin-sdk`; use that crate instead.
//!
//! wit-bindgen puts every exported interface's glue macro at the crate root, named after the
//! interface. Both worlds export `vnode:plugin/plugin`, so generating both worlds in one crate
//! collides; the translator world therefore lives here, and `vnode-plugin-sdk` generates the
//! placement world reusing this crate's shared types (`types`, `host`).
//!
//! Every generated type derives `serde::Serialize`/`Deserialize`: in contract 0.3.0 a decision's
//! input and answer cross the boundary as one postcard-encoded buffer of these types
//! (`wit/README.md`, "The encoding of 0.3.0"), which `vnode-plugin-sdk` encodes and decodes.

#[doc(hidden)]
pub use wit_bindgen::rt as __rt;

wit_bindgen::generate!({
    path: "../../wit/v0.3.0",
    world: "vnode:plugin/translator-plugin@0.3.0",
    pub_export_macro: true,
    export_macro_name: "__export_translator_world",
    default_bindings_module: "vnode_plugin_sdk::translator_bindings",
    additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
    // A file's content and a pull secret's values are read as one byte string each instead
    // of element by element (see `bytes` and `byte_pairs`).
    additional_member_attributes: {
        "vnode:plugin/pod@0.3.0/file.content": [#[serde(with = "crate::bytes")]],
        "vnode:plugin/pod@0.3.0/pull-secret.data": [#[serde(with = "crate::byte_pairs")]],
    },
    generate_all,
    // 0.3.0's functions take bytes, so no function names the records: generate them anyway.
    generate_unused_types: true,
});

/// Serde for a `list<u8>` field as a byte string. The 0.3.0 encoding (postcard) writes a byte
/// string exactly as a `list<u8>`, its length then the bytes, so the wire format is unchanged;
/// but serde's `Vec<u8>` reads a sequence one element (one call chain per byte) at a time,
/// while a byte string is one bounds check and one copy. Self-describing formats (JSON) that
/// hand over a sequence of numbers instead are accepted too.
#[doc(hidden)]
pub mod bytes {
    use core::fmt;

    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::ser::Serializer;

    /// Writes `bytes` as a byte string.
    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    /// Reads a byte string (or a sequence of bytes).
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_byte_buf(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

/// Serde for a `list<tuple<string, list<u8>>>` field (a pull secret's data) whose byte lists
/// are byte strings (see [`bytes`]): the same wire bytes as the plain derive, but each value
/// is read with one bounds check and one copy instead of one serde call per byte.
#[doc(hidden)]
pub mod byte_pairs {
    use core::fmt;

    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::ser::{SerializeSeq, SerializeTuple, Serializer};
    use serde::{Deserialize, Serialize};

    /// Writes the pairs as a list of `(string, byte string)` tuples.
    pub fn serialize<S: Serializer>(
        pairs: &[(String, Vec<u8>)],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut list = serializer.serialize_seq(Some(pairs.len()))?;
        for (key, value) in pairs {
            list.serialize_element(&PairRef(key, value))?;
        }
        list.end()
    }

    /// Reads a list of `(string, byte string)` tuples.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<(String, Vec<u8>)>, D::Error> {
        deserializer.deserialize_seq(PairsVisitor)
    }

    struct PairRef<'a>(&'a str, &'a [u8]);

    impl Serialize for PairRef<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut tuple = serializer.serialize_tuple(2)?;
            tuple.serialize_element(self.0)?;
            tuple.serialize_element(&Bytes(self.1))?;
            tuple.end()
        }
    }

    struct Bytes<'a>(&'a [u8]);

    impl Serialize for Bytes<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            crate::bytes::serialize(self.0, serializer)
        }
    }

    #[derive(Deserialize)]
    struct Pair(String, #[serde(with = "crate::bytes")] Vec<u8>);

    struct PairsVisitor;

    impl<'de> Visitor<'de> for PairsVisitor {
        type Value = Vec<(String, Vec<u8>)>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of (string, bytes) pairs")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            // As serde's own `Vec`: the hint reserves, but never more than a sane amount.
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 12));
            while let Some(Pair(key, value)) = seq.next_element()? {
                out.push((key, value));
            }
            Ok(out)
        }
    }
}
