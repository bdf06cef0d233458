//! The 0.3.0 boundary: one encoded buffer in, one out per decision.
//!
//! `placement.place` receives a `placement-input` and answers a `decision`;
//! `translator.translate` receives a `translate-input` and answers a `translate-result`, each
//! in the contract's compact encoding (`wit/README.md`, "The encoding of 0.3.0": postcard 1.x
//! of the generated types' serde derives). The export macros call [`place`] / [`translate`],
//! which decode, run the plugin's unchanged `place(pod, context)` / `translate(input)` and
//! encode the answer, so a plugin never handles bytes.
//!
//! Decoding is the SDK's own reader of postcard's wire rules (`codec::de`: strings checked
//! for ASCII a word at a time, one-byte varints inline; the same results and errors as
//! `postcard::take_from_bytes`, which its tests check on every truncation and corruption of
//! real inputs). Encoding is postcard's serializer into a pre-sized buffer ([`encode`]).
//!
//! Input that does not decode (truncated, trailing bytes, an unknown case, invalid UTF-8) means
//! the host and the plugin disagree about the contract. The plugin then does not guess:
//! - a placement plugin **refuses** the pod with a reason that names the plugin and the
//!   decoding error (the pod's event says what went wrong; nothing is placed on a misread pod);
//! - a translator answers **`internal`** with the same message (no request is sent to ECI).
//!
//! Encoding an answer cannot fail for these types (postcard fails only on sequences of unknown
//! length, which the derives never produce); should it ever, the plugin answers the same way
//! with the encoding error, and if even that cannot be encoded it returns no bytes, which the
//! host reports as malformed output. Nothing here panics on any input.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::placement::{Decision, PlacementInput};
use crate::translator::{TranslateError, TranslateInput, TranslateResult};
use crate::{PlacementPlugin, TranslatorPlugin};

/// Why a buffer is not exactly one encoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Not a valid encoding of the expected type: truncated, an unknown case index, a varint
    /// out of range, invalid UTF-8 (postcard's error).
    Malformed(postcard::Error),
    /// A whole value decoded but bytes are left over (decoding is strict).
    TrailingBytes {
        /// Bytes the value used.
        used: usize,
        /// Bytes left after it.
        left: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Malformed(e) => write!(f, "{e}"),
            DecodeError::TrailingBytes { used, left } => write!(
                f,
                "{left} trailing byte(s) after a complete value of {used} byte(s)"
            ),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Decodes exactly one `T` from `bytes` (strict: trailing bytes are an error).
///
/// postcard's wire rules, read by the SDK's own [`de::Reader`] (see there for why).
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DecodeError> {
    let mut reader = de::Reader::new(bytes);
    let value = T::deserialize(&mut reader).map_err(DecodeError::Malformed)?;
    let rest = reader.rest();
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(DecodeError::TrailingBytes {
            used: bytes.len() - rest.len(),
            left: rest.len(),
        })
    }
}

/// Encodes `value` in the contract's encoding.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::serialize_with_flavor(value, Answer(Vec::with_capacity(ANSWER_CAPACITY)))
}

/// The answer buffer's first capacity: more than the corpus's largest answer (~0.7 KiB), so
/// it never grows for a realistic pod. With the SDK's bump allocator this is only address
/// space (nothing is touched until written), and a larger answer still grows in place.
const ANSWER_CAPACITY: usize = 4096;

/// postcard's output into a `Vec`, like its own `AllocVec`, except that the one-byte slices
/// it hands over for every short varint (each string's and list's length, each case index)
/// are pushed, not copied with a `memcpy` call.
struct Answer(Vec<u8>);

impl postcard::ser_flavors::Flavor for Answer {
    type Output = Vec<u8>;

    #[inline(always)]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    #[inline(always)]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        match bytes {
            [byte] => self.0.push(*byte),
            _ => self.0.extend_from_slice(bytes),
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

/// The placement export: `input` is an encoded `placement-input`, the result an encoded
/// `decision` (see the module docs for what happens to input that does not decode).
pub fn place<T: PlacementPlugin>(input: &[u8]) -> Vec<u8> {
    let decision = match decode::<PlacementInput>(input) {
        Ok(PlacementInput { pod, context }) => T::place(pod, context),
        Err(e) => Decision::Refuse(format!(
            "{}: cannot read the host's placement input ({e}): host and plugin disagree on \
             vnode:plugin@{}, so the pod is refused rather than placed on a guess",
            T::info().name,
            crate::CONTRACT_VERSION
        )),
    };
    encode_or(decision, |e| {
        Decision::Refuse(format!(
            "{}: cannot encode its decision ({e})",
            T::info().name
        ))
    })
}

/// The translator export: `input` is an encoded `translate-input`, the result an encoded
/// `translate-result` (see the module docs for what happens to input that does not decode).
pub fn translate<T: TranslatorPlugin>(input: &[u8]) -> Vec<u8> {
    let result: TranslateResult = match decode::<TranslateInput>(input) {
        Ok(input) => T::translate(input),
        Err(e) => Err(TranslateError::Internal(format!(
            "{}: cannot read the host's translate input ({e}): host and plugin disagree on \
             vnode:plugin@{}",
            T::info().name,
            crate::CONTRACT_VERSION
        ))),
    };
    encode_or(result, |e| {
        Err(TranslateError::Internal(format!(
            "{}: cannot encode its answer ({e})",
            T::info().name
        )))
    })
}

/// A value that a Wasm build never frees: the instance serves one decision and the host then
/// throws its whole memory away, so walking a decision's input or answer (hundreds of strings
/// and lists for a translation) to free it, mostly no-ops in the SDK's bump allocator, would
/// be wasted work. Native builds (unit tests, benchmarks of the logic) free it as usual.
pub struct Discarded<T>(core::mem::ManuallyDrop<T>);

impl<T> Discarded<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Discarded(core::mem::ManuallyDrop::new(value))
    }
}

impl<T> core::ops::Deref for Discarded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl<T> Drop for Discarded<T> {
    fn drop(&mut self) {
        // SAFETY: dropped exactly once, here; the value is not used afterwards.
        unsafe { core::mem::ManuallyDrop::drop(&mut self.0) }
    }
}

/// `value` encoded; if that fails, `fallback(error)` encoded; if that fails too, no bytes
/// (which the host reports as malformed output).
///
/// The answer is not freed ([`Discarded`]).
fn encode_or<T: Serialize>(value: T, fallback: impl FnOnce(postcard::Error) -> T) -> Vec<u8> {
    let value = Discarded::new(value);
    match encode(&*value) {
        Ok(bytes) => bytes,
        Err(e) => encode(&fallback(e)).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::{Deferral, PlacementContext, PodView};
    use crate::testing::{
        annotate, context, label, pod, resolved_pod, spread_over_zones, tolerate, translate_input,
        with_container,
    };
    use crate::translator::{ContainerGroupRequest, FieldError};
    use crate::{Plugin, PluginInfo};

    fn sample_placement_input() -> PlacementInput {
        placement_input_with(
            "web-7d9f",
            ("k8s.aliyun.com/eci-spot-strategy", "x"),
            0,
            "k = v",
        )
    }

    /// A placement input with most of the pod view set: `name`, one `annotation`,
    /// `zone_i_count` groups in the second zone, the plugin `config`.
    pub(super) fn placement_input_with(
        name: &str,
        annotation: (&str, &str),
        zone_i_count: u32,
        config: &str,
    ) -> PlacementInput {
        let pod = annotate(pod("shop", name), annotation.0, annotation.1);
        let pod = label(pod, "app", "web");
        let pod = tolerate(pod, "team", "shop");
        let pod = with_container(pod, "app", 1500, 2048);
        let mut pod = spread_over_zones(pod, 1, "DoNotSchedule");
        pod.priority = Some(-5);
        pod.meta.owner_kind = Some("ReplicaSet".into());
        PlacementInput {
            pod,
            context: context(
                &[
                    ("cn-hangzhou-h", "vsw-h", 3),
                    ("cn-hangzhou-i", "vsw-i", zone_i_count),
                ],
                config,
            ),
        }
    }

    /// Answers with what it saw, so the tests see the decoded input.
    struct Echo;
    impl Plugin for Echo {
        fn info() -> PluginInfo {
            PluginInfo {
                name: "echo".into(),
                version: "1".into(),
                description: String::new(),
            }
        }
        fn init(_: String) -> Result<(), String> {
            Ok(())
        }
    }
    impl PlacementPlugin for Echo {
        fn place(pod: PodView, context: PlacementContext) -> Decision {
            Decision::Defer(Deferral {
                retry_after_ms: context.zones.len() as u32,
                reason: format!(
                    "{}/{} {}",
                    pod.meta.namespace, pod.meta.name, context.config
                ),
            })
        }
    }
    impl TranslatorPlugin for Echo {
        fn translate(input: TranslateInput) -> Result<ContainerGroupRequest, TranslateError> {
            Err(TranslateError::InvalidPod(FieldError {
                field: input.pod.meta.name,
                message: input.node.security_group_id,
            }))
        }
    }

    #[test]
    fn inputs_and_answers_round_trip() {
        let input = sample_placement_input();
        let bytes = encode(&input).expect("encodes");
        assert_eq!(decode::<PlacementInput>(&bytes), Ok(input));

        let input = translate_input(resolved_pod("shop", "web-7d9f"));
        let bytes = encode(&input).expect("encodes");
        assert_eq!(decode::<TranslateInput>(&bytes), Ok(input));

        let answer: TranslateResult = Err(TranslateError::Unsupported(FieldError {
            field: "spec.hostNetwork".into(),
            message: "ECI cannot".into(),
        }));
        let bytes = encode(&answer).expect("encodes");
        assert_eq!(decode::<TranslateResult>(&bytes), Ok(answer));
    }

    #[test]
    fn the_wire_format_is_the_documented_one() {
        // variant case index, then the record's fields in order: u32 varint, string.
        let defer = Decision::Defer(Deferral {
            retry_after_ms: 300,
            reason: "x".into(),
        });
        assert_eq!(encode(&defer).expect("encodes"), [2, 0xac, 0x02, 1, b'x']);
        // result: 1 = err; translate-error case 2 = internal(string).
        let err: TranslateResult = Err(TranslateError::Internal("e".into()));
        assert_eq!(encode(&err).expect("encodes"), [1, 2, 1, b'e']);
    }

    #[test]
    fn file_content_is_a_list_of_u8_on_the_wire() {
        // `File.content` is (de)serialized as a byte string: postcard writes it exactly as the
        // `list<u8>` the contract documents (length, then the bytes), which is how the host
        // and other guests encode it.
        use crate::translator::File;
        let content: Vec<u8> = (0..=255).collect();
        let file = File {
            path: "a".into(),
            content: content.clone(),
            mode: Some(0o644),
        };
        let mut want = vec![1, b'a'];
        want.extend(postcard::to_allocvec(&content).expect("encodes"));
        want.extend([1, 0xa4, 0x03]);
        assert_eq!(encode(&file).expect("encodes"), want);
        assert_eq!(decode::<File>(&want), Ok(file));
        // Truncated content is refused, not read short.
        assert!(matches!(
            decode::<File>(&want[..want.len() - 10]),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn encodes_exactly_as_postcard_does() {
        // Inputs and answers, strings with two-byte lengths, an answer larger than the
        // first capacity of the buffer.
        let input = sample_placement_input();
        assert_eq!(encode(&input), postcard::to_allocvec(&input));
        let input = translate_input(resolved_pod("shop", &"x".repeat(300)));
        assert_eq!(encode(&input), postcard::to_allocvec(&input));
        let answer = Decision::Refuse("é".repeat(ANSWER_CAPACITY));
        let bytes = encode(&answer).expect("encodes");
        assert!(bytes.len() > ANSWER_CAPACITY);
        assert_eq!(Ok(bytes), postcard::to_allocvec(&answer));
        let empty: TranslateResult = Err(TranslateError::Internal(String::new()));
        assert_eq!(encode(&empty), postcard::to_allocvec(&empty));
    }

    #[test]
    fn pull_secret_data_is_a_list_of_byte_lists_on_the_wire() {
        // The field is (de)serialized with byte strings (`byte_pairs`); the bytes are the
        // plain derive's: the record's fields in order, the data a list of (string, list<u8>).
        use crate::translator::PullSecret;
        let secret = PullSecret {
            name: "registry".into(),
            type_: "kubernetes.io/dockercfg".into(),
            data: vec![
                (".dockercfg".into(), (0..=255).collect()),
                ("empty".into(), Vec::new()),
            ],
        };
        let plain =
            postcard::to_allocvec(&(&secret.name, &secret.type_, &secret.data)).expect("encodes");
        assert_eq!(encode(&secret).expect("encodes"), plain);
        assert_eq!(decode::<PullSecret>(&plain), Ok(secret));
        // Truncated data is refused, not read short.
        assert!(matches!(
            decode::<PullSecret>(&plain[..plain.len() - 1]),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn the_glue_decodes_calls_and_encodes() {
        let input = sample_placement_input();
        let answer = place::<Echo>(&encode(&input).expect("encodes"));
        assert_eq!(
            decode::<Decision>(&answer),
            Ok(Decision::Defer(Deferral {
                retry_after_ms: 2,
                reason: "shop/web-7d9f k = v".into()
            }))
        );

        let input = translate_input(resolved_pod("shop", "api"));
        let answer = translate::<Echo>(&encode(&input).expect("encodes"));
        assert_eq!(
            decode::<TranslateResult>(&answer),
            Ok(Err(TranslateError::InvalidPod(FieldError {
                field: "api".into(),
                message: "sg-test".into()
            })))
        );
    }

    #[test]
    fn placement_input_that_does_not_decode_is_refused_by_name() {
        let bytes = encode(&sample_placement_input()).expect("encodes");
        // Every truncation (including no bytes at all) is answered, never a panic or a guess.
        for len in 0..bytes.len() {
            match decode::<Decision>(&place::<Echo>(&bytes[..len])) {
                Ok(Decision::Refuse(reason)) => {
                    assert!(reason.starts_with("echo: cannot read"), "{reason}");
                    assert!(reason.contains("vnode:plugin@0.3.0"), "{reason}");
                }
                other => panic!("truncated to {len}: {other:?}"),
            }
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        match decode::<Decision>(&place::<Echo>(&trailing)) {
            Ok(Decision::Refuse(reason)) => {
                assert!(reason.contains("1 trailing byte(s)"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn translate_input_that_does_not_decode_is_an_internal_error() {
        let bytes = encode(&translate_input(resolved_pod("shop", "api"))).expect("encodes");
        for len in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            match decode::<TranslateResult>(&translate::<Echo>(&bytes[..len])) {
                Ok(Err(TranslateError::Internal(message))) => {
                    assert!(message.starts_with("echo: cannot read"), "{message}")
                }
                other => panic!("truncated to {len}: {other:?}"),
            }
        }
        // An unknown case index in the input (here: the first byte of a string length is
        // fine, so corrupt UTF-8 instead) is refused too.
        let mut bad = bytes.clone();
        let name = bad
            .windows(3)
            .position(|w| w == b"api")
            .expect("the pod name is in the encoding");
        bad[name] = 0xff;
        assert!(matches!(
            decode::<TranslateResult>(&translate::<Echo>(&bad)),
            Ok(Err(TranslateError::Internal(_)))
        ));
    }

    #[test]
    fn decode_is_strict() {
        assert_eq!(decode::<u32>(&[5]), Ok(5));
        assert_eq!(
            decode::<u32>(&[5, 0]),
            Err(DecodeError::TrailingBytes { used: 1, left: 1 })
        );
        assert!(matches!(
            decode::<Decision>(&[7]),
            Err(DecodeError::Malformed(_))
        ));
    }
}

// The decoder: a module of this file, not a file of its own, because `vnode plugin new`
// vendors the SDK file by file.
mod de {
    //! The decoder of the 0.3.0 encoding: postcard 1.x's wire rules (`wit/README.md`, "The
    //! encoding of 0.3.0"), read by a serde `Deserializer` made for this one job.
    //!
    //! Why not `postcard::from_bytes`: a decision's input is a few hundred short strings, options
    //! and one-byte varints, and postcard spent most of a translation's decoding on two things
    //! that are general there and needless here:
    //! - every string went through `core::str::from_utf8`, whose ASCII fast path only starts at
    //!   two aligned words, so a short name was validated byte by byte behind a function call
    //!   (15 % of a translation's instructions). Here a string is first checked with
    //!   `<[u8]>::is_ascii` (word at a time, inlined); only a string with a non-ASCII byte is
    //!   validated by `from_utf8`, so invalid UTF-8 still fails;
    //! - every length, count and case index went through a varint loop with a bounds check per
    //!   byte, although nearly all of them fit one byte. Here one-byte varints take one compare;
    //!   longer ones take the loop out of line.
    //!
    //! The rules are postcard's exactly, error for error (the tests decode the same buffers, every
    //! truncation and corruption of them included, with both): varints of the type's width
    //! (lengths and counts of `usize`'s, as postcard) with the same overflow checks, zigzag for
    //! signed integers, `bool` and `option` tags only 0 or 1, enums by varint case index, floats
    //! as little-endian IEEE 754, no `deserialize_any`. Errors are `postcard::Error` values.

    use postcard::Error;
    use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

    type Result<T> = core::result::Result<T, Error>;

    /// Reads values off the front of a buffer.
    pub(crate) struct Reader<'de> {
        /// What is left to read.
        rest: &'de [u8],
    }

    impl<'de> Reader<'de> {
        pub(crate) fn new(bytes: &'de [u8]) -> Self {
            Reader { rest: bytes }
        }

        /// Bytes not read yet.
        pub(crate) fn rest(&self) -> &'de [u8] {
            self.rest
        }

        #[inline(always)]
        fn byte(&mut self) -> Result<u8> {
            match self.rest.split_first() {
                Some((&b, rest)) => {
                    self.rest = rest;
                    Ok(b)
                }
                None => Err(Error::DeserializeUnexpectedEnd),
            }
        }

        #[inline(always)]
        fn take(&mut self, n: usize) -> Result<&'de [u8]> {
            match self.rest.split_at_checked(n) {
                Some((taken, rest)) => {
                    self.rest = rest;
                    Ok(taken)
                }
                None => Err(Error::DeserializeUnexpectedEnd),
            }
        }

        /// An unsigned varint of at most `BITS` bits (postcard's rules: at most
        /// `ceil(BITS / 7)` bytes, and the last of that many may not carry bits beyond `BITS`).
        /// One-byte varints (lengths, counts and case indices nearly always) stay inline.
        #[inline(always)]
        fn varint<const BITS: u32>(&mut self) -> Result<u64> {
            let first = self.byte()?;
            if first < 0x80 {
                return Ok(u64::from(first));
            }
            self.varint_tail::<BITS>(first)
        }

        #[inline(never)]
        fn varint_tail<const BITS: u32>(&mut self, first: u8) -> Result<u64> {
            let max_bytes = BITS.div_ceil(7);
            // The bits the last allowed byte may carry.
            let max_last = (1u64 << (BITS - 7 * (max_bytes - 1))) - 1;
            let mut out = u64::from(first & 0x7f);
            for i in 1..max_bytes {
                let b = self.byte()?;
                out |= u64::from(b & 0x7f) << (7 * i);
                if b & 0x80 == 0 {
                    if i == max_bytes - 1 && u64::from(b) > max_last {
                        return Err(Error::DeserializeBadVarint);
                    }
                    return Ok(out);
                }
            }
            Err(Error::DeserializeBadVarint)
        }

        #[inline(always)]
        fn u16(&mut self) -> Result<u16> {
            self.varint::<16>().map(|v| v as u16)
        }

        #[inline(always)]
        fn u32(&mut self) -> Result<u32> {
            self.varint::<32>().map(|v| v as u32)
        }

        #[inline(always)]
        fn u64(&mut self) -> Result<u64> {
            self.varint::<64>()
        }

        /// A length or count: a varint as wide as `usize`, as postcard reads it.
        #[inline(always)]
        fn len(&mut self) -> Result<usize> {
            self.varint::<{ usize::BITS }>().map(|v| v as usize)
        }

        /// A string's bytes: the length, then the bytes, which must be UTF-8.
        #[inline(always)]
        fn str(&mut self) -> Result<&'de str> {
            let len = self.len()?;
            utf8(self.take(len)?)
        }

        #[inline(always)]
        fn fixed<const N: usize>(&mut self) -> Result<[u8; N]> {
            let bytes = self.take(N)?;
            let mut out = [0; N];
            out.copy_from_slice(bytes);
            Ok(out)
        }

        /// A varint wider than 64 bits (`i128`/`u128`: not in the contract, read for
        /// completeness with postcard's rules).
        #[inline(never)]
        fn u128(&mut self) -> Result<u128> {
            const MAX_BYTES: u32 = 128_u32.div_ceil(7);
            let mut out = 0u128;
            for i in 0..MAX_BYTES {
                let b = self.byte()?;
                out |= u128::from(b & 0x7f) << (7 * i);
                if b & 0x80 == 0 {
                    if i == MAX_BYTES - 1 && b > 0x03 {
                        return Err(Error::DeserializeBadVarint);
                    }
                    return Ok(out);
                }
            }
            Err(Error::DeserializeBadVarint)
        }
    }

    /// `bytes` as a string if they are UTF-8: ASCII (almost every string of a pod) is checked a
    /// word at a time, anything else by the full validation.
    #[inline(always)]
    fn utf8(bytes: &[u8]) -> Result<&str> {
        if bytes.is_ascii() {
            // SAFETY: ASCII is UTF-8.
            Ok(unsafe { core::str::from_utf8_unchecked(bytes) })
        } else {
            utf8_slow(bytes)
        }
    }

    #[inline(never)]
    fn utf8_slow(bytes: &[u8]) -> Result<&str> {
        core::str::from_utf8(bytes).map_err(|_| Error::DeserializeBadUtf8)
    }

    fn unzigzag(n: u64) -> i64 {
        ((n >> 1) as i64) ^ -((n & 1) as i64)
    }

    /// The elements of a list, tuple or record: `left` more values follow.
    struct Elements<'a, 'de> {
        reader: &'a mut Reader<'de>,
        left: usize,
    }

    impl<'de> de::SeqAccess<'de> for Elements<'_, 'de> {
        type Error = Error;

        #[inline(always)]
        fn next_element_seed<T: DeserializeSeed<'de>>(
            &mut self,
            seed: T,
        ) -> Result<Option<T::Value>> {
            if self.left == 0 {
                return Ok(None);
            }
            self.left -= 1;
            seed.deserialize(&mut *self.reader).map(Some)
        }

        #[inline(always)]
        fn size_hint(&self) -> Option<usize> {
            // As postcard: no hint when the count cannot be right (more elements than bytes
            // left), so a corrupt count does not reserve memory.
            (self.left <= self.reader.rest.len()).then_some(self.left)
        }
    }

    impl<'de> de::MapAccess<'de> for Elements<'_, 'de> {
        type Error = Error;

        #[inline]
        fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
            if self.left == 0 {
                return Ok(None);
            }
            self.left -= 1;
            seed.deserialize(&mut *self.reader).map(Some)
        }

        #[inline]
        fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
            seed.deserialize(&mut *self.reader)
        }

        #[inline]
        fn size_hint(&self) -> Option<usize> {
            Some(self.left)
        }
    }

    impl<'de> de::Deserializer<'de> for &mut Reader<'de> {
        type Error = Error;

        fn is_human_readable(&self) -> bool {
            false
        }

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
            // The encoding is not self-describing.
            Err(Error::WontImplement)
        }

        #[inline]
        fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            match self.byte()? {
                0 => visitor.visit_bool(false),
                1 => visitor.visit_bool(true),
                _ => Err(Error::DeserializeBadBool),
            }
        }

        #[inline]
        fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            visitor.visit_i8(self.byte()? as i8)
        }

        #[inline]
        fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            let v = self.u16()?;
            visitor.visit_i16(unzigzag(u64::from(v)) as i16)
        }

        #[inline]
        fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            let v = self.u32()?;
            visitor.visit_i32(unzigzag(u64::from(v)) as i32)
        }

        #[inline]
        fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            let v = self.u64()?;
            visitor.visit_i64(unzigzag(v))
        }

        fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            let n = self.u128()?;
            visitor.visit_i128(((n >> 1) as i128) ^ -((n & 1) as i128))
        }

        #[inline]
        fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            visitor.visit_u8(self.byte()?)
        }

        #[inline]
        fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            visitor.visit_u16(self.u16()?)
        }

        #[inline]
        fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            visitor.visit_u32(self.u32()?)
        }

        #[inline]
        fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            visitor.visit_u64(self.u64()?)
        }

        fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            visitor.visit_u128(self.u128()?)
        }

        #[inline]
        fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            visitor.visit_f32(f32::from_le_bytes(self.fixed()?))
        }

        #[inline]
        fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            visitor.visit_f64(f64::from_le_bytes(self.fixed()?))
        }

        fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            // A string of exactly one character, at most 4 bytes.
            let len = self.len()?;
            if len > 4 {
                return Err(Error::DeserializeBadChar);
            }
            let text =
                core::str::from_utf8(self.take(len)?).map_err(|_| Error::DeserializeBadChar)?;
            let mut chars = text.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => visitor.visit_char(c),
                _ => Err(Error::DeserializeBadChar),
            }
        }

        #[inline]
        fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            visitor.visit_borrowed_str(self.str()?)
        }

        #[inline]
        fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            // One copy, into a string of exactly its size (what `String`'s visitor would do with
            // the borrowed text, minus the allocator calls: see `copy_str`).
            visitor.visit_string(crate::allocator::copy_str(self.str()?))
        }

        #[inline]
        fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            let len = self.len()?;
            visitor.visit_borrowed_bytes(self.take(len)?)
        }

        #[inline]
        fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            let len = self.len()?;
            visitor.visit_bytes(self.take(len)?)
        }

        #[inline]
        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            match self.byte()? {
                0 => visitor.visit_none(),
                1 => visitor.visit_some(self),
                _ => Err(Error::DeserializeBadOption),
            }
        }

        #[inline]
        fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            // Nothing on the wire.
            visitor.visit_unit()
        }

        #[inline]
        fn deserialize_unit_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            visitor: V,
        ) -> Result<V::Value> {
            visitor.visit_unit()
        }

        #[inline]
        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            visitor: V,
        ) -> Result<V::Value> {
            visitor.visit_newtype_struct(self)
        }

        #[inline]
        fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            let left = self.len()?;
            visitor.visit_seq(Elements { reader: self, left })
        }

        #[inline]
        fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
            visitor.visit_seq(Elements {
                reader: self,
                left: len,
            })
        }

        #[inline]
        fn deserialize_tuple_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            len: usize,
            visitor: V,
        ) -> Result<V::Value> {
            self.deserialize_tuple(len, visitor)
        }

        fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            let left = self.len()?;
            visitor.visit_map(Elements { reader: self, left })
        }

        #[inline]
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value> {
            // A record is its fields in order, nothing between them.
            self.deserialize_tuple(fields.len(), visitor)
        }

        #[inline]
        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _: &'static str,
            _: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value> {
            visitor.visit_enum(self)
        }

        fn deserialize_identifier<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
            // Field and case names are not encoded.
            Err(Error::WontImplement)
        }

        fn deserialize_ignored_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
            Err(Error::WontImplement)
        }
    }

    impl<'de> de::EnumAccess<'de> for &mut Reader<'de> {
        type Error = Error;
        type Variant = Self;

        #[inline]
        fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
            // The case index; an unknown one is refused by the derive's visitor (as in postcard).
            let index = self.u32()?;
            let case = seed.deserialize(index.into_deserializer())?;
            Ok((case, self))
        }
    }

    impl<'de> de::VariantAccess<'de> for &mut Reader<'de> {
        type Error = Error;

        #[inline]
        fn unit_variant(self) -> Result<()> {
            Ok(())
        }

        #[inline]
        fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
            seed.deserialize(self)
        }

        #[inline]
        fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
            de::Deserializer::deserialize_tuple(self, len, visitor)
        }

        #[inline]
        fn struct_variant<V: Visitor<'de>>(
            self,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value> {
            de::Deserializer::deserialize_tuple(self, fields.len(), visitor)
        }
    }

    #[cfg(test)]
    mod tests {
        use core::fmt::Debug;

        use serde::Deserialize;

        use super::*;
        use crate::placement::{Decision, PlacementInput};
        use crate::testing::{context, resolved_pod, translate_input};
        use crate::translator::{
            Container, EnvValue, EnvVar, File, FileSet, Handler, HttpGetAction, IntOrString,
            PodSecurityContext, Probe, PullSecret, TranslateInput, TranslateResult, Volume,
            VolumeSource,
        };

        /// `T` off the front of `bytes` with this reader: the value and the bytes left.
        fn ours<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<(T, &'a [u8])> {
            let mut reader = Reader::new(bytes);
            let value = T::deserialize(&mut reader)?;
            Ok((value, reader.rest()))
        }

        /// Both decoders read `bytes` alike: the same value and rest, or the same error.
        fn same<'a, T: Deserialize<'a> + PartialEq + Debug>(bytes: &'a [u8]) {
            let theirs = postcard::take_from_bytes::<T>(bytes);
            assert_eq!(ours::<T>(bytes), theirs, "bytes {bytes:02x?}");
        }

        /// Every prefix and every single-byte corruption (a few telling values per position)
        /// of `bytes` is read alike by both decoders.
        fn same_under_damage<T: for<'a> Deserialize<'a> + PartialEq + Debug>(bytes: &[u8]) {
            same::<T>(bytes);
            for len in 0..bytes.len() {
                same::<T>(&bytes[..len]);
            }
            let mut damaged = bytes.to_vec();
            for i in 0..bytes.len() {
                for value in [0x00, 0x01, 0x02, 0x7f, 0x80, 0xc3, 0xff, bytes[i] ^ 0x01] {
                    damaged[i] = value;
                    same::<T>(&damaged);
                }
                damaged[i] = bytes[i];
            }
        }

        /// Non-ASCII text and multi-byte varints next to the usual fields.
        fn placement_input() -> PlacementInput {
            crate::codec::tests::placement_input_with(
                "wéb-7d9f",
                ("k8s.aliyun.com/eci-use-specs", "2-4Gi"),
                300,
                "zones = all",
            )
        }

        /// A translator input that uses most of the contract: probes, env, files with binary
        /// content, a pull secret, negative and multi-byte integers, non-ASCII text.
        fn translate_input_with_everything() -> TranslateInput {
            let mut pod = resolved_pod("shop", "api-0");
            let app: &mut Container = &mut pod.containers[0];
            app.command = vec!["/bin/server".into(), "--name=grüße 🚀".into()];
            app.env = vec![
                EnvVar {
                    name: "MODE".into(),
                    value: EnvValue::Literal("x".repeat(200)),
                },
                EnvVar {
                    name: "POD_IP".into(),
                    value: EnvValue::FieldRef("status.podIP".into()),
                },
            ];
            app.liveness_probe = Some(Probe {
                handler: Handler::HttpGet(HttpGetAction {
                    path: Some("/healthz".into()),
                    port: IntOrString::Int(8080),
                    host: None,
                    scheme: Some("HTTP".into()),
                    headers: Vec::new(),
                }),
                initial_delay_seconds: Some(-1),
                period_seconds: Some(i32::MAX),
                timeout_seconds: None,
                success_threshold: Some(i32::MIN),
                failure_threshold: Some(3),
            });
            app.readiness_probe = Some(Probe {
                handler: Handler::Sleep(i64::MIN),
                initial_delay_seconds: None,
                period_seconds: None,
                timeout_seconds: None,
                success_threshold: None,
                failure_threshold: None,
            });
            pod.init_containers.push(app.clone());
            pod.volumes.push(Volume {
                name: "config".into(),
                source: VolumeSource::Secret(FileSet {
                    files: vec![File {
                        path: "key.bin".into(),
                        content: (0..=255).collect(),
                        mode: Some(0o400),
                    }],
                    default_mode: Some(u32::MAX),
                    optional_missing: true,
                }),
            });
            pod.image_pull_secrets.push(PullSecret {
                name: "registry".into(),
                type_: "kubernetes.io/dockerconfigjson".into(),
                data: vec![(".dockerconfigjson".into(), br#"{"auths":{}}"#.to_vec())],
            });
            pod.security_context = Some(PodSecurityContext {
                run_as_user: Some(1000),
                run_as_group: Some(-1),
                run_as_non_root: Some(true),
                fs_group: Some(i64::MAX),
                supplemental_groups: vec![0, 1, -1, 1 << 40],
                sysctls: Vec::new(),
            });
            pod.active_deadline_seconds = Some(600);
            let mut input = translate_input(pod);
            input.config = "ü".into();
            input
        }

        #[test]
        fn reads_the_contract_inputs_as_postcard_does() {
            let input = placement_input();
            let bytes = postcard::to_allocvec(&input).expect("encodes");
            assert_eq!(ours::<PlacementInput>(&bytes), Ok((input, &[][..])));
            same_under_damage::<PlacementInput>(&bytes);

            let input = translate_input_with_everything();
            let bytes = postcard::to_allocvec(&input).expect("encodes");
            assert_eq!(ours::<TranslateInput>(&bytes), Ok((input, &[][..])));
            same_under_damage::<TranslateInput>(&bytes);

            // And the answers (the host's decoder is postcard; these check the reader's enums).
            let zones = context(&[("cn-hangzhou-h", "vsw-h", 0)], "").zones;
            let mut attempt = crate::decide::attempt_in(&zones[0]);
            attempt.spot = crate::SpotStrategy::SpotWithPriceLimit(0.25);
            attempt.spot_duration_hours = Some(1);
            let answer = crate::decide::accept(vec![attempt], "least used zone");
            same_under_damage::<Decision>(&postcard::to_allocvec(&answer).expect("encodes"));
            let answer: TranslateResult =
                Err(crate::translator::TranslateError::Internal("é".into()));
            same_under_damage::<TranslateResult>(&postcard::to_allocvec(&answer).expect("encodes"));
        }

        #[test]
        fn varints_follow_postcard_to_the_last_bit() {
            for v in [
                0u64,
                1,
                127,
                128,
                255,
                16_383,
                16_384,
                u64::from(u32::MAX),
                u64::MAX,
            ] {
                let bytes = postcard::to_allocvec(&v).expect("encodes");
                same::<u64>(&bytes);
                same::<u32>(&bytes);
                same::<u16>(&bytes);
                same::<i64>(&bytes);
                same::<i32>(&bytes);
                same::<i16>(&bytes);
                same::<usize>(&bytes);
                same::<u128>(&bytes);
                same::<i128>(&bytes);
            }
            // Overlong, and a last byte that carries bits beyond the type.
            for bytes in [
                &[0x80, 0x80, 0x80, 0x80, 0x0f][..],
                &[0x80, 0x80, 0x80, 0x80, 0x10],
                &[0xff, 0xff, 0x03],
                &[0xff, 0xff, 0x04],
                &[0xff; 10],
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
                &[0x80; 19],
            ] {
                same::<u16>(bytes);
                same::<u32>(bytes);
                same::<u64>(bytes);
                same::<i32>(bytes);
                same::<i64>(bytes);
                same::<u128>(bytes);
            }
            assert_eq!(ours::<u32>(&[0xac, 0x02]), Ok((300, &[][..])));
            assert_eq!(
                ours::<u32>(&[0x80, 0x80, 0x80, 0x80, 0x10]),
                Err(Error::DeserializeBadVarint)
            );
        }

        #[test]
        fn scalars_strings_and_tags_follow_postcard() {
            for bytes in [&[0u8][..], &[1], &[2], &[]] {
                same::<bool>(bytes);
                same::<Option<u8>>(bytes);
                same::<u8>(bytes);
                same::<i8>(bytes);
            }
            assert_eq!(ours::<Option<bool>>(&[2]), Err(Error::DeserializeBadOption));
            assert_eq!(ours::<bool>(&[2]), Err(Error::DeserializeBadBool));
            for text in [
                "",
                "a",
                "ascii only, longer than two words",
                "zoné",
                "🚀",
                "日本語テキスト",
            ] {
                let bytes = postcard::to_allocvec(&text).expect("encodes");
                same::<String>(&bytes);
                same::<&str>(&bytes);
                same_under_damage::<String>(&bytes);
            }
            // Invalid UTF-8, alone and after a long ASCII run.
            for bytes in [&[1, 0xff][..], &[2, 0xc3, 0x28], &[3, 0xe2, 0x82, 0x28]] {
                assert_eq!(ours::<String>(bytes), Err(Error::DeserializeBadUtf8));
                same::<String>(bytes);
            }
            let mut long = vec![20];
            long.extend(b"0123456789abcdefghi");
            long.push(0x80);
            assert_eq!(ours::<String>(&long), Err(Error::DeserializeBadUtf8));
            // Floats, chars, byte strings, tuples, maps.
            for v in [0.0, -1.5, f64::MAX, f64::MIN_POSITIVE] {
                same::<f64>(&postcard::to_allocvec(&v).expect("encodes"));
                same::<f32>(&postcard::to_allocvec(&(v as f32)).expect("encodes"));
            }
            for c in ['a', 'é', '🚀'] {
                same_under_damage::<char>(&postcard::to_allocvec(&c).expect("encodes"));
            }
            same::<char>(&[2, b'a', b'b']);
            same::<char>(&[5, b'a', b'b', b'c', b'd', b'e']);
            let pairs: Vec<(String, Vec<u8>)> =
                vec![("k".into(), vec![0, 200]), ("".into(), vec![])];
            same_under_damage::<Vec<(String, Vec<u8>)>>(
                &postcard::to_allocvec(&pairs).expect("encodes"),
            );
            let map: std::collections::BTreeMap<String, u32> =
                [("a".into(), 1), ("b".into(), 300)].into();
            same_under_damage::<std::collections::BTreeMap<String, u32>>(
                &postcard::to_allocvec(&map).expect("encodes"),
            );
            // Not self-describing.
            assert_eq!(
                ours::<serde::de::IgnoredAny>(&[0]).map(|_| ()),
                Err(Error::WontImplement)
            );
        }

        #[test]
        fn a_list_count_beyond_the_input_reserves_nothing_and_fails() {
            // Claims 2^31 strings in 5 bytes: refused as truncated, without a huge reservation.
            let bytes = [0x80, 0x80, 0x80, 0x80, 0x08];
            assert_eq!(
                ours::<Vec<String>>(&bytes),
                Err(Error::DeserializeUnexpectedEnd)
            );
            same::<Vec<String>>(&bytes);
        }
    }
}
