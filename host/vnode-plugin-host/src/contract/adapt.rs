//! One call surface over every supported contract version. The host codes against the latest
//! types. A 0.3.0 component gets them encoded as one buffer ([`super::wire`]) and answers one;
//! a 0.2.0 component takes the very same generated types as typed arguments (0.3.0 did not
//! change a type), with no conversion. A 0.1.0 component gets its input converted down and
//! its answer converted up: versions differ only by additions, so the conversion is a serde
//! round-trip through the shared field names (fields 0.1.0 lacks are dropped on the way down,
//! nothing new can come up). It costs a few microseconds per call, paid only by 0.1.0
//! components.

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::wire::{self, PlacementInputRef};
use super::{v0_1_0, v0_2_0, v0_3_0};
use crate::contract::{
    ContainerGroupRequest, Decision, PlacementContext, PluginInfo, PodView, TranslateError,
    TranslateInput,
};
use crate::state::HostState;
use crate::steps::{Step, StepObserver};

/// Converts between two versions of the same type by field names.
fn convert<A: Serialize, B: DeserializeOwned>(value: &A, what: &str) -> wasmtime::Result<B> {
    let json = serde_json::to_value(value)
        .map_err(|e| wasmtime::format_err!("adapting {what} to the plugin's contract: {e}"))?;
    serde_json::from_value(json)
        .map_err(|e| wasmtime::format_err!("adapting {what} to the plugin's contract: {e}"))
}

/// A pre-linked placement component of one contract version.
#[derive(Clone)]
pub(crate) enum PlacementPre {
    V0_1(v0_1_0::placement::PlacementPluginPre<HostState>),
    V0_2(v0_2_0::placement::PlacementPluginPre<HostState>),
    V0_3(v0_3_0::placement::PlacementPluginPre<HostState>),
}

/// An instantiated placement component of one contract version.
pub(crate) enum PlacementInstance {
    V0_1(v0_1_0::placement::PlacementPlugin),
    V0_2(v0_2_0::placement::PlacementPlugin),
    V0_3(v0_3_0::placement::PlacementPlugin),
}

/// A pre-linked translator component of one contract version.
#[derive(Clone)]
pub(crate) enum TranslatorPre {
    V0_1(v0_1_0::translator::TranslatorPluginPre<HostState>),
    V0_2(v0_2_0::translator::TranslatorPluginPre<HostState>),
    V0_3(v0_3_0::translator::TranslatorPluginPre<HostState>),
}

/// An instantiated translator component of one contract version.
pub(crate) enum TranslatorInstance {
    V0_1(v0_1_0::translator::TranslatorPlugin),
    V0_2(v0_2_0::translator::TranslatorPlugin),
    V0_3(v0_3_0::translator::TranslatorPlugin),
}

fn unknown(version: &str) -> wasmtime::Error {
    wasmtime::format_err!("no bindings for contract version {version}")
}

impl PlacementPre {
    /// Resolves the world's exports for `version` (one of [`super::SUPPORTED_VERSIONS`]).
    pub(crate) fn new(version: &str, pre: InstancePre<HostState>) -> wasmtime::Result<Self> {
        Ok(match version {
            v0_3_0::VERSION => Self::V0_3(v0_3_0::placement::PlacementPluginPre::new(pre)?),
            v0_2_0::VERSION => Self::V0_2(v0_2_0::placement::PlacementPluginPre::new(pre)?),
            v0_1_0::VERSION => Self::V0_1(v0_1_0::placement::PlacementPluginPre::new(pre)?),
            other => return Err(unknown(other)),
        })
    }

    pub(crate) fn instantiate(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<PlacementInstance> {
        Ok(match self {
            Self::V0_1(p) => PlacementInstance::V0_1(p.instantiate(store)?),
            Self::V0_2(p) => PlacementInstance::V0_2(p.instantiate(store)?),
            Self::V0_3(p) => PlacementInstance::V0_3(p.instantiate(store)?),
        })
    }
}

impl PlacementInstance {
    pub(crate) fn call_info(&self, store: &mut Store<HostState>) -> wasmtime::Result<PluginInfo> {
        match self {
            Self::V0_3(b) => Ok(info_from_v0_3(b.vnode_plugin_plugin().call_info(store)?)),
            Self::V0_2(b) => b.vnode_plugin_plugin().call_info(store),
            Self::V0_1(b) => convert(&b.vnode_plugin_plugin().call_info(store)?, "plugin info"),
        }
    }

    pub(crate) fn call_init(
        &self,
        store: &mut Store<HostState>,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Self::V0_3(b) => b.vnode_plugin_plugin().call_init(store, config),
            Self::V0_2(b) => b.vnode_plugin_plugin().call_init(store, config),
            Self::V0_1(b) => b.vnode_plugin_plugin().call_init(store, config),
        }
    }

    /// `steps` hears the end of the encode, call and decode steps (0.3.0; older versions
    /// mark only the call, which includes their lowering and lifting).
    pub(crate) fn call_place(
        &self,
        store: &mut Store<HostState>,
        pod: &PodView,
        context: &PlacementContext,
        steps: &mut impl StepObserver,
    ) -> wasmtime::Result<Decision> {
        let decision = match self {
            Self::V0_3(b) => {
                let input = PlacementInputRef { pod, context };
                let answer = wire::with_encoded(&input, "the placement input", |bytes| {
                    steps.mark(Step::Encoded);
                    b.vnode_plugin_placement().call_place(&mut *store, bytes)
                })?;
                steps.mark(Step::Called);
                let decision = wire::decode_decision(&answer)?;
                steps.mark(Step::Decoded);
                return Ok(decision);
            }
            Self::V0_2(b) => b.vnode_plugin_placement().call_place(store, pod, context),
            Self::V0_1(b) => {
                let pod: v0_1_0::placement::exports::vnode::plugin::placement::PodView =
                    convert(pod, "the pod")?;
                let context: v0_1_0::placement::exports::vnode::plugin::placement::PlacementContext =
                    convert(context, "the placement context")?;
                let decision = b
                    .vnode_plugin_placement()
                    .call_place(store, &pod, &context)?;
                convert(&decision, "the decision")
            }
        };
        steps.mark(Step::Called);
        decision
    }
}

impl TranslatorPre {
    /// Resolves the world's exports for `version` (one of [`super::SUPPORTED_VERSIONS`]).
    pub(crate) fn new(version: &str, pre: InstancePre<HostState>) -> wasmtime::Result<Self> {
        Ok(match version {
            v0_3_0::VERSION => Self::V0_3(v0_3_0::translator::TranslatorPluginPre::new(pre)?),
            v0_2_0::VERSION => Self::V0_2(v0_2_0::translator::TranslatorPluginPre::new(pre)?),
            v0_1_0::VERSION => Self::V0_1(v0_1_0::translator::TranslatorPluginPre::new(pre)?),
            other => return Err(unknown(other)),
        })
    }

    pub(crate) fn instantiate(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<TranslatorInstance> {
        Ok(match self {
            Self::V0_1(p) => TranslatorInstance::V0_1(p.instantiate(store)?),
            Self::V0_2(p) => TranslatorInstance::V0_2(p.instantiate(store)?),
            Self::V0_3(p) => TranslatorInstance::V0_3(p.instantiate(store)?),
        })
    }
}

impl TranslatorInstance {
    pub(crate) fn call_info(&self, store: &mut Store<HostState>) -> wasmtime::Result<PluginInfo> {
        match self {
            Self::V0_3(b) => Ok(info_from_v0_3(b.vnode_plugin_plugin().call_info(store)?)),
            Self::V0_2(b) => b.vnode_plugin_plugin().call_info(store),
            Self::V0_1(b) => convert(&b.vnode_plugin_plugin().call_info(store)?, "plugin info"),
        }
    }

    pub(crate) fn call_init(
        &self,
        store: &mut Store<HostState>,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Self::V0_3(b) => b.vnode_plugin_plugin().call_init(store, config),
            Self::V0_2(b) => b.vnode_plugin_plugin().call_init(store, config),
            Self::V0_1(b) => b.vnode_plugin_plugin().call_init(store, config),
        }
    }

    /// `steps` hears the end of the encode, call and decode steps, as in
    /// [`PlacementInstance::call_place`].
    pub(crate) fn call_translate(
        &self,
        store: &mut Store<HostState>,
        input: &TranslateInput,
        steps: &mut impl StepObserver,
    ) -> wasmtime::Result<Result<ContainerGroupRequest, TranslateError>> {
        let result = match self {
            Self::V0_3(b) => {
                let answer = wire::with_encoded(input, "the translator input", |bytes| {
                    steps.mark(Step::Encoded);
                    b.vnode_plugin_translator()
                        .call_translate(&mut *store, bytes)
                })?;
                steps.mark(Step::Called);
                let result = wire::decode_translate_result(&answer)?;
                steps.mark(Step::Decoded);
                return Ok(result);
            }
            Self::V0_2(b) => b.vnode_plugin_translator().call_translate(store, input),
            Self::V0_1(b) => {
                let input: v0_1_0::translator::exports::vnode::plugin::translator::TranslateInput =
                    convert(input, "the translator input")?;
                let result = b.vnode_plugin_translator().call_translate(store, &input)?;
                convert(&result, "the translation")
            }
        };
        steps.mark(Step::Called);
        result
    }
}

/// 0.3.0's `plugin-info` as the re-exported (0.2.0-generated, identical) record.
fn info_from_v0_3(info: v0_3_0::placement::vnode::plugin::types::PluginInfo) -> PluginInfo {
    PluginInfo {
        name: info.name,
        version: info.version,
        description: info.description,
    }
}

/// `From` between two versions' `host.log-level` (the enum is the same in every version).
macro_rules! log_level_from {
    ($new:path => $old:path) => {
        impl From<$new> for $old {
            fn from(level: $new) -> $old {
                use $new as New;
                use $old as Old;
                match level {
                    New::Trace => Old::Trace,
                    New::Debug => Old::Debug,
                    New::Info => Old::Info,
                    New::Warn => Old::Warn,
                    New::Error => Old::Error,
                }
            }
        }
    };
}

log_level_from!(v0_3_0::placement::vnode::plugin::host::LogLevel => v0_2_0::placement::vnode::plugin::host::LogLevel);
log_level_from!(v0_2_0::placement::vnode::plugin::host::LogLevel => v0_1_0::placement::vnode::plugin::host::LogLevel);

// The host imports of 0.3.0 and 0.2.0 delegate to the 0.1.0 implementation in `state.rs`
// (the `host` interface is unchanged between the versions).
impl v0_3_0::placement::vnode::plugin::host::Host for HostState {
    fn log(&mut self, level: v0_3_0::placement::vnode::plugin::host::LogLevel, message: String) {
        let level = v0_2_0::placement::vnode::plugin::host::LogLevel::from(level);
        v0_2_0::placement::vnode::plugin::host::Host::log(self, level, message);
    }
}

impl v0_3_0::placement::vnode::plugin::types::Host for HostState {}
impl v0_3_0::translator::vnode::plugin::pod::Host for HostState {}
impl v0_3_0::translator::vnode::plugin::request::Host for HostState {}

impl v0_2_0::placement::vnode::plugin::host::Host for HostState {
    fn log(&mut self, level: v0_2_0::placement::vnode::plugin::host::LogLevel, message: String) {
        v0_1_0::placement::vnode::plugin::host::Host::log(self, level.into(), message);
    }
}

// Type-only interfaces: bindgen still wants their (empty) host traits.
impl v0_2_0::placement::vnode::plugin::types::Host for HostState {}
impl v0_2_0::translator::vnode::plugin::pod::Host for HostState {}
impl v0_2_0::translator::vnode::plugin::request::Host for HostState {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples;

    #[test]
    fn log_levels_convert_to_the_same_level_of_older_versions() {
        use v0_3_0::placement::vnode::plugin::host::LogLevel as V3;
        for level in [V3::Trace, V3::Debug, V3::Info, V3::Warn, V3::Error] {
            let v2 = v0_2_0::placement::vnode::plugin::host::LogLevel::from(level);
            let v1 = v0_1_0::placement::vnode::plugin::host::LogLevel::from(v2);
            assert_eq!(format!("{level:?}"), format!("{v2:?}"));
            assert_eq!(format!("{level:?}"), format!("{v1:?}"));
        }
    }

    #[test]
    fn latest_input_converts_down_and_drops_new_fields() {
        let (mut pod, context) = samples::placement_sample();
        pod.topology_spread
            .push(crate::contract::TopologySpreadConstraint {
                topology_key: "topology.kubernetes.io/zone".into(),
                max_skew: 1,
                when_unsatisfiable: "DoNotSchedule".into(),
                match_labels: Vec::new(),
                match_expressions: Vec::new(),
                min_domains: None,
            });
        let old: v0_1_0::placement::exports::vnode::plugin::placement::PodView =
            convert(&pod, "pod").expect("converts");
        assert_eq!(old.meta.name, pod.meta.name);
        assert_eq!(old.containers.len(), pod.containers.len());
        let _: v0_1_0::placement::exports::vnode::plugin::placement::PlacementContext =
            convert(&context, "context").expect("converts");
        let input = samples::translate_sample();
        let old: v0_1_0::translator::exports::vnode::plugin::translator::TranslateInput =
            convert(&input, "input").expect("converts");
        let back: TranslateInput = convert(&old, "input").expect("round trip");
        assert_eq!(
            back, input,
            "the translator input is unchanged between versions"
        );
    }
}
