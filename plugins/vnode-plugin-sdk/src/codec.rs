//! The 0.3.0 boundary: one encoded buffer in, one out per decision.
//!
//! `placement.place` receives a `placement-input` and answers a `decision`;
//! `translator.translate` receives a `translate-input` and answers a `translate-result`, each
//! in the contract's compact encoding (`wit/README.md`, "The encoding of 0.3.0": postcard 1.x
//! of the generated types' serde derives). The export macros call [`place`] / [`translate`],
//! which decode, run the plugin's unchanged `place(pod, context)` / `translate(input)` and
//! encode the answer, so a plugin never handles bytes.
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
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DecodeError> {
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(DecodeError::Malformed)?;
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
    // With the SDK's bump allocator the buffer is the newest allocation while it grows, so
    // each growth extends it in place: no copies, no size pre-pass.
    postcard::to_allocvec(value)
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
        let pod = annotate(
            pod("shop", "web-7d9f"),
            "k8s.aliyun.com/eci-spot-strategy",
            "x",
        );
        let pod = label(pod, "app", "web");
        let pod = tolerate(pod, "team", "shop");
        let pod = with_container(pod, "app", 1500, 2048);
        let mut pod = spread_over_zones(pod, 1, "DoNotSchedule");
        pod.priority = Some(-5);
        pod.meta.owner_kind = Some("ReplicaSet".into());
        PlacementInput {
            pod,
            context: context(
                &[("cn-hangzhou-h", "vsw-h", 3), ("cn-hangzhou-i", "vsw-i", 0)],
                "k = v",
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
