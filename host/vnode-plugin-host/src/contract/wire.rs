//! The byte encoding of contract 0.3.0 (`wit/README.md`, "The encoding of 0.3.0"): postcard
//! 1.x of the serde-derived generated types. `place` receives a `placement-input` and answers
//! a `decision`; `translate` receives a `translate-input` and answers a `translate-result`.
//!
//! The host encodes and decodes the 0.2.0-generated types it re-exports: 0.3.0 declares the
//! same records and variants, and postcard writes only the shape (field order, case indices),
//! never a name. The tests below decode the host's bytes with 0.3.0's own generated types and
//! re-encode them to prove the two are the same on the wire.
//!
//! Decoding is strict: a truncated value, an unknown case, invalid UTF-8 or bytes left over
//! after the value are a [`MalformedOutput`], which the call reports as
//! [`crate::PluginError::InvalidOutput`].

use std::cell::Cell;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::contract::{
    ContainerGroupRequest, Decision, PlacementContext, PodView, TranslateError, TranslateInput,
};

/// `vnode:plugin/placement-plugin@0.3.0`, for messages.
pub(crate) const PLACEMENT_WORLD: &str = "vnode:plugin/placement-plugin@0.3.0";
/// `vnode:plugin/translator-plugin@0.3.0`, for messages.
pub(crate) const TRANSLATOR_WORLD: &str = "vnode:plugin/translator-plugin@0.3.0";

/// `placement-input`: what `place` receives. Borrows the host's values (postcard encodes a
/// reference exactly like the value).
#[derive(Serialize)]
pub(crate) struct PlacementInputRef<'a> {
    pub(crate) pod: &'a PodView,
    pub(crate) context: &'a PlacementContext,
}

/// `translate-result`: what `translate` answers.
pub type TranslateResult = Result<ContainerGroupRequest, TranslateError>;

/// A 0.3.0 answer whose bytes are not exactly one value of the expected type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MalformedOutput(pub(crate) String);

impl std::fmt::Display for MalformedOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MalformedOutput {}

thread_local! {
    /// The encoding buffer of this thread's last call, reused so an input costs no allocation
    /// once the buffer has grown to the usual input size. Taken out for the call (a nested
    /// encode on the same thread would simply start a fresh one).
    static BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Inputs larger than this are not kept for reuse (a one-off giant pod does not pin memory).
const MAX_KEPT_BUFFER: usize = 256 * 1024;

/// Encodes `value` and runs `call` with the bytes. `what` names the value for the (host-side,
/// practically impossible) failure to encode.
pub(crate) fn with_encoded<T: Serialize + ?Sized, R>(
    value: &T,
    what: &str,
    call: impl FnOnce(&[u8]) -> wasmtime::Result<R>,
) -> wasmtime::Result<R> {
    let mut buffer = BUFFER.take();
    buffer.clear();
    let buffer = postcard::to_extend(value, buffer)
        .map_err(|e| wasmtime::format_err!("encoding {what} for a 0.3.0 plugin: {e}"))?;
    let result = call(&buffer);
    if buffer.capacity() <= MAX_KEPT_BUFFER {
        BUFFER.set(buffer);
    }
    result
}

/// The bytes a contract-0.3.0 placement plugin receives for `pod` in `context`: what
/// [`crate::LoadedPlugin::place_blocking`] passes to `place` (after setting `context.config`
/// to the version's configuration). For tools that run a plugin's code outside the host, e.g.
/// `vnode bench plugins`' native rows.
pub fn placement_input_bytes(pod: &PodView, context: &PlacementContext) -> Vec<u8> {
    // Encoding the host's own records cannot fail (no maps with non-string keys, no
    // sequences of unknown length); an empty buffer would be refused by any plugin.
    postcard::to_allocvec(&PlacementInputRef { pod, context }).unwrap_or_default()
}

/// The bytes a contract-0.3.0 translator receives for `input` (see
/// [`placement_input_bytes`]).
pub fn translate_input_bytes(input: &TranslateInput) -> Vec<u8> {
    postcard::to_allocvec(input).unwrap_or_default()
}

/// The bytes a contract-0.3.0 placement plugin answers `decision` with (for tools that
/// compare a plugin's answer outside the host with the host's decoded one).
pub fn decision_bytes(decision: &Decision) -> Vec<u8> {
    postcard::to_allocvec(decision).unwrap_or_default()
}

/// The bytes a contract-0.3.0 translator answers `result` with (see [`decision_bytes`]).
pub fn translate_result_bytes(result: &TranslateResult) -> Vec<u8> {
    postcard::to_allocvec(result).unwrap_or_default()
}

/// Decodes exactly one `T` from a plugin's answer: `world` and `what` (the WIT type) name it
/// in the error.
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    world: &str,
    what: &str,
) -> Result<T, MalformedOutput> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(MalformedOutput(format!(
            "{world}: the answer holds a `{what}` followed by {} more bytes (the encoding allows no trailing bytes)",
            rest.len()
        ))),
        Err(e) => Err(MalformedOutput(format!(
            "{world}: the answer's {} bytes are not a valid `{what}` in the contract's encoding ({e})",
            bytes.len()
        ))),
    }
}

/// Decodes a `decision`.
pub(crate) fn decode_decision(bytes: &[u8]) -> Result<Decision, MalformedOutput> {
    decode(bytes, PLACEMENT_WORLD, "decision")
}

/// Decodes a `translate-result`.
pub(crate) fn decode_translate_result(bytes: &[u8]) -> Result<TranslateResult, MalformedOutput> {
    decode(bytes, TRANSLATOR_WORLD, "translate-result")
}

/// Encodes `value` the way calls do (tests).
#[cfg(test)]
fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    with_encoded(value, "a test value", |b| Ok(b.to_vec())).expect("the host's types encode")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::v0_3_0;
    use crate::contract::{Accepted, Deferral, TranslateInput};
    use crate::samples;

    type PlacementInputV3 = v0_3_0::placement::exports::vnode::plugin::placement::PlacementInput;
    type DecisionV3 = v0_3_0::placement::exports::vnode::plugin::placement::Decision;
    type TranslateInputV3 = v0_3_0::translator::exports::vnode::plugin::translator::TranslateInput;
    type TranslateResultV3 = Result<
        v0_3_0::translator::vnode::plugin::request::ContainerGroupRequest,
        v0_3_0::translator::exports::vnode::plugin::translator::TranslateError,
    >;

    /// The shipped default translator's request for the sample pod: a realistic request
    /// with containers, probes, volumes and tags.
    fn sample_request() -> ContainerGroupRequest {
        let engine = crate::PluginEngine::new(crate::RuntimeConfig {
            warm_instances: 0,
            call_timeout: std::time::Duration::from_secs(10),
            ..crate::RuntimeConfig::default()
        })
        .expect("engine");
        let plugin = crate::PluginLoader::new(engine, None)
            .load_blocking(
                &crate::PluginSource {
                    bytes: crate::builtin::TRANSLATOR_DEFAULT.to_vec(),
                    path: None,
                },
                Some(crate::PluginKind::Translator),
                "",
            )
            .expect("the default translator loads");
        plugin
            .translate_blocking(samples::translate_sample())
            .expect("translates")
            .value
            .expect("accepts the sample")
    }

    fn decisions() -> Vec<Decision> {
        let (pod, context) = samples::placement_sample();
        let attempt = samples::translate_sample().attempt;
        vec![
            Decision::Accept(Accepted {
                attempts: vec![attempt.clone(), attempt],
                reason: format!("{} in {}", pod.meta.name, context.region),
            }),
            Decision::Refuse("namespace is on the refusal list".into()),
            Decision::Defer(Deferral {
                retry_after_ms: 1500,
                reason: "waiting for capacity".into(),
            }),
        ]
    }

    fn translate_results() -> Vec<TranslateResult> {
        vec![
            Ok(sample_request()),
            Err(TranslateError::Unsupported(crate::contract::FieldError {
                field: "spec.hostNetwork".into(),
                message: "ECI cannot run host-network pods".into(),
            })),
            Err(TranslateError::Internal("bug".into())),
        ]
    }

    /// The public encoders give exactly the bytes a call passes to the plugin.
    #[test]
    fn public_input_bytes_are_the_calls_bytes() {
        let (pod, context) = samples::placement_sample();
        assert_eq!(
            placement_input_bytes(&pod, &context),
            encode(&PlacementInputRef {
                pod: &pod,
                context: &context,
            })
        );
        let input = samples::translate_sample();
        assert_eq!(translate_input_bytes(&input), encode(&input));
        assert!(!translate_input_bytes(&input).is_empty());
        for decision in decisions() {
            assert_eq!(decision_bytes(&decision), encode(&decision));
            assert_eq!(decode_decision(&decision_bytes(&decision)), Ok(decision));
        }
        for result in translate_results() {
            assert_eq!(translate_result_bytes(&result), encode(&result));
        }
    }

    /// Every sample goes through the host's encoder, is decoded by 0.3.0's own generated types
    /// (what a guest built with the SDK decodes into) and re-encoded to the same bytes, and the
    /// host's decoder gives back the original value.
    #[test]
    fn every_sample_round_trips_and_matches_the_0_3_0_types_byte_for_byte() {
        let (pod, context) = samples::placement_sample();
        let bytes = encode(&PlacementInputRef {
            pod: &pod,
            context: &context,
        });
        let v3: PlacementInputV3 = postcard::from_bytes(&bytes).expect("0.3.0 decodes it");
        assert_eq!(v3.pod.meta.name, pod.meta.name);
        assert_eq!(v3.pod.topology_spread.len(), pod.topology_spread.len());
        assert_eq!(postcard::to_allocvec(&v3).expect("encodes"), bytes);

        let input = samples::translate_sample();
        let bytes = encode(&input);
        let v3: TranslateInputV3 = postcard::from_bytes(&bytes).expect("0.3.0 decodes it");
        assert_eq!(v3.pod.containers.len(), input.pod.containers.len());
        assert_eq!(postcard::to_allocvec(&v3).expect("encodes"), bytes);
        let back: TranslateInput = decode(&bytes, TRANSLATOR_WORLD, "translate-input")
            .expect("the host decodes its own input");
        assert_eq!(back, input);

        for decision in decisions() {
            let bytes = encode(&decision);
            let v3: DecisionV3 = postcard::from_bytes(&bytes).expect("0.3.0 decodes it");
            assert_eq!(postcard::to_allocvec(&v3).expect("encodes"), bytes);
            assert_eq!(decode_decision(&bytes), Ok(decision));
        }
        for result in translate_results() {
            let bytes = encode(&result);
            let v3: TranslateResultV3 = postcard::from_bytes(&bytes).expect("0.3.0 decodes it");
            assert_eq!(postcard::to_allocvec(&v3).expect("encodes"), bytes);
            assert_eq!(decode_translate_result(&bytes), Ok(result));
        }
    }

    /// The encoding is the one `wit/README.md` documents, checked on a small value by hand.
    #[test]
    fn the_bytes_are_the_documented_format() {
        let decision = Decision::Defer(Deferral {
            retry_after_ms: 300,
            reason: "ab".into(),
        });
        // case 2 (defer); u32 300 as LEB128 (0xac 0x02); string: length 2, then UTF-8.
        assert_eq!(encode(&decision), [2, 0xac, 0x02, 2, b'a', b'b']);
        let refuse = Decision::Refuse("é".into());
        assert_eq!(encode(&refuse), [1, 2, 0xc3, 0xa9]);
        let ok: TranslateResult = Err(TranslateError::Internal(String::new()));
        // result: 1 = err; translate-error case 2 (internal); empty string.
        assert_eq!(encode(&ok), [1, 2, 0]);
    }

    #[test]
    fn a_truncated_answer_is_malformed() {
        for decision in decisions() {
            let bytes = encode(&decision);
            for cut in 0..bytes.len() {
                let err = decode_decision(&bytes[..cut]).expect_err("truncated");
                assert!(err.0.contains(PLACEMENT_WORLD), "{err}");
                assert!(err.0.contains("`decision`"), "{err}");
            }
        }
        let bytes = encode(&translate_results()[0]);
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            let err = decode_translate_result(&bytes[..cut]).expect_err("truncated");
            assert!(
                err.0.contains(TRANSLATOR_WORLD) && err.0.contains("`translate-result`"),
                "{err}"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_malformed() {
        let mut bytes = encode(&decisions()[1]);
        bytes.push(0);
        let err = decode_decision(&bytes).expect_err("trailing byte");
        assert!(err.0.contains("followed by 1 more bytes"), "{err}");
        let mut bytes = encode(&translate_results()[0]);
        bytes.extend_from_slice(b"junk");
        let err = decode_translate_result(&bytes).expect_err("trailing bytes");
        assert!(err.0.contains("followed by 4 more bytes"), "{err}");
    }

    #[test]
    fn an_unknown_case_or_bad_utf8_is_malformed() {
        // `decision` has three cases (0..=2).
        let err = decode_decision(&[3, 0]).expect_err("unknown case");
        assert!(err.0.contains("not a valid `decision`"), "{err}");
        // `result` has two.
        let err = decode_translate_result(&[2]).expect_err("unknown result case");
        assert!(err.0.contains("not a valid `translate-result`"), "{err}");
        // `translate-error` has three.
        let err = decode_translate_result(&[1, 3, 0]).expect_err("unknown error case");
        assert!(err.0.contains("not a valid"), "{err}");
        // refuse("\xff"): not UTF-8.
        let err = decode_decision(&[1, 1, 0xff]).expect_err("invalid UTF-8");
        assert!(err.0.contains("not a valid"), "{err}");
        // defer with a `retry-after-ms` varint longer than a u32 allows.
        let err =
            decode_decision(&[2, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0]).expect_err("overlong");
        assert!(err.0.contains("not a valid"), "{err}");
    }

    #[test]
    fn the_buffer_is_reused_and_a_nested_encode_is_independent() {
        let (pod, context) = samples::placement_sample();
        let input = PlacementInputRef {
            pod: &pod,
            context: &context,
        };
        let first = encode(&input);
        let nested = with_encoded(&input, "outer", |outer| {
            let inner = encode(&decisions()[2]);
            Ok((outer.to_vec(), inner))
        })
        .expect("encodes");
        assert_eq!(nested.0, first);
        assert_eq!(nested.1, encode(&decisions()[2]));
    }
}
