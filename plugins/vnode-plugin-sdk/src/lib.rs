//! Write vnode plugins in Rust.
//!
//! The contract (`wit/v0.1.0`, package `vnode:plugin@0.1.0`) is generated here once for both
//! worlds, so a plugin crate is a plain `impl` plus one macro call:
//!
//! ```text
//! use vnode_plugin_sdk::{Plugin, PlacementPlugin, PluginInfo, placement::*};
//!
//! struct MyPolicy;
//! impl Plugin for MyPolicy {
//!     fn info() -> PluginInfo { PluginInfo { name: "my-policy".into(), version: "0.1.0".into(), description: "…".into() } }
//!     fn init(config: String) -> Result<(), String> { Ok(()) }
//! }
//! impl PlacementPlugin for MyPolicy {
//!     fn place(pod: PodView, context: PlacementContext) -> Decision { /* … */ }
//! }
//! vnode_plugin_sdk::export_placement_plugin!(MyPolicy);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the output `.wasm` is a component.
//! The crate also compiles for the host target, so a plugin's logic can be unit-tested natively
//! (`cargo test`); only calling [`host::log`] outside Wasm panics, so keep logging at the edges
//! or use [`log`], which is a no-op natively.

/// The contract version this SDK builds against (the `vnode:plugin` package version).
pub const CONTRACT_VERSION: &str = "0.1.0";

// The generated code names this crate by its public path (so that plugin crates expanding the
// export macros resolve it); make that path valid inside the crate too.
extern crate self as vnode_plugin_sdk;

#[doc(hidden)]
pub mod placement_bindings {
    wit_bindgen::generate!({
        path: "../../wit/v0.1.0",
        world: "vnode:plugin/placement-plugin@0.1.0",
        pub_export_macro: true,
        export_macro_name: "__export_placement_world",
        default_bindings_module: "vnode_plugin_sdk::placement_bindings",
        // The shared interfaces are generated once (with the translator world), so a
        // `KeyValue` or `Attempt` is the same Rust type in both worlds.
        with: {
            "vnode:plugin/types@0.1.0": vnode_plugin_sdk_translator::vnode::plugin::types,
            "vnode:plugin/host@0.1.0": vnode_plugin_sdk_translator::vnode::plugin::host,
        },
        additional_derives: [PartialEq],
        generate_all,
    });
}

/// The translator world's generated bindings (see `vnode-plugin-sdk-translator` for why they
/// live in a crate of their own).
#[doc(hidden)]
pub use vnode_plugin_sdk_translator as translator_bindings;

#[doc(hidden)]
pub use wit_bindgen::rt as __rt;

/// Types shared by both worlds (`interface types`).
pub use translator_bindings::vnode::plugin::types::{
    Attempt, InstanceSpec, KeyValue, PluginInfo, PodMeta, ResourceList, ResourceRequirements,
    Sizing, SpotStrategy, Toleration, ZoneVswitch,
};

/// The host's imports (`interface host`): bounded logging.
pub mod host {
    pub use crate::translator_bindings::vnode::plugin::host::{LogLevel, log};
}

/// The placement world's types (`interface placement`).
pub mod placement {
    pub use crate::placement_bindings::exports::vnode::plugin::placement::{
        Accepted, ContainerView, Decision, Deferral, PlacementContext, PodView, Stockout, ZoneUsage,
    };
}

/// The translator world's types (`interfaces pod`, `request` and `translator`).
pub mod translator {
    pub use crate::translator_bindings::exports::vnode::plugin::translator::{
        FieldError, NodeDefaults, TranslateError, TranslateInput,
    };
    pub use crate::translator_bindings::vnode::plugin::pod::{
        ClaimSource, Container, ContainerPort, DnsConfig, DnsOption, EmptyDirSource, EnvValue,
        EnvVar, File, FileSet, GrpcAction, Handler, HostAlias, HostPathSource, HttpGetAction,
        HttpHeader, IntOrString, Lifecycle, NfsSource, PodSecurityContext, Probe, PullSecret,
        ResolvedPod, SecurityContext, Sysctl, TcpSocketAction, Volume, VolumeMount, VolumeSource,
    };
    pub use crate::translator_bindings::vnode::plugin::request::{
        ContainerGroupRequest, EciConfigFile, EciConfigFileVolume, EciContainer, EciDisk,
        EciDnsConfig, EciEip, EciEmptyDir, EciEnv, EciFlex, EciHandler, EciHostAlias, EciHostPath,
        EciHttpGet, EciNfs, EciPort, EciProbe, EciSecurityContext, EciTcpSocket, EciVolume,
        EciVolumeKind, EciVolumeMount, RegistryCredential,
    };
}

/// Writes one line to the host log when running as a plugin; does nothing in native unit tests
/// (where there is no host). The host bounds what it keeps (see `interface host`).
pub fn log(level: host::LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (level, message);
}

/// Metadata and configuration, exported by every plugin (`interface plugin`).
pub trait Plugin {
    /// Name, version and description of this plugin.
    fn info() -> PluginInfo;
    /// Validates the configuration string; an `Err` refuses the load with that message. Nothing
    /// stored here survives into a decision (each decision runs in a fresh instance).
    fn init(config: String) -> Result<(), String>;
}

/// A placement policy (`world placement-plugin`).
pub trait PlacementPlugin: Plugin {
    /// Decides for one pod. Must be deterministic.
    fn place(pod: placement::PodView, context: placement::PlacementContext) -> placement::Decision;
}

/// A translator (`world translator-plugin`).
pub trait TranslatorPlugin: Plugin {
    /// Translates one pod for one placement attempt. Must be deterministic.
    fn translate(
        input: translator::TranslateInput,
    ) -> Result<translator::ContainerGroupRequest, translator::TranslateError>;
}

/// Adapters from the SDK traits to the generated `Guest` traits; used by the export macros.
#[doc(hidden)]
pub mod __adapt {
    use core::marker::PhantomData;

    pub struct Placement<T>(PhantomData<T>);
    pub struct Translator<T>(PhantomData<T>);

    impl<T: super::PlacementPlugin> crate::placement_bindings::exports::vnode::plugin::plugin::Guest
        for Placement<T>
    {
        fn info() -> super::PluginInfo {
            T::info()
        }
        fn init(config: String) -> Result<(), String> {
            T::init(config)
        }
    }
    impl<T: super::PlacementPlugin>
        crate::placement_bindings::exports::vnode::plugin::placement::Guest for Placement<T>
    {
        fn place(
            pod: super::placement::PodView,
            context: super::placement::PlacementContext,
        ) -> super::placement::Decision {
            T::place(pod, context)
        }
    }
    impl<T: super::TranslatorPlugin>
        crate::translator_bindings::exports::vnode::plugin::plugin::Guest for Translator<T>
    {
        fn info() -> super::PluginInfo {
            T::info()
        }
        fn init(config: String) -> Result<(), String> {
            T::init(config)
        }
    }
    impl<T: super::TranslatorPlugin>
        crate::translator_bindings::exports::vnode::plugin::translator::Guest for Translator<T>
    {
        fn translate(
            input: super::translator::TranslateInput,
        ) -> Result<super::translator::ContainerGroupRequest, super::translator::TranslateError>
        {
            T::translate(input)
        }
    }
}

/// Exports a [`PlacementPlugin`] implementation as this component's `placement-plugin` world.
#[macro_export]
macro_rules! export_placement_plugin {
    ($ty:ty) => {
        // Only a Wasm build exports anything: native builds (unit tests of the logic) would
        // fail to link the component-model export names.
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        mod __vnode_placement_export {
            #[allow(unused_imports)]
            use super::*;
            type __VnodePlacementExport = $crate::__adapt::Placement<$ty>;
            $crate::placement_bindings::__export_placement_world!(__VnodePlacementExport with_types_in $crate::placement_bindings);
        }
    };
}

/// Exports a [`TranslatorPlugin`] implementation as this component's `translator-plugin` world.
#[macro_export]
macro_rules! export_translator_plugin {
    ($ty:ty) => {
        // Only a Wasm build exports anything: native builds (unit tests of the logic) would
        // fail to link the component-model export names.
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        mod __vnode_translator_export {
            #[allow(unused_imports)]
            use super::*;
            type __VnodeTranslatorExport = $crate::__adapt::Translator<$ty>;
            $crate::translator_bindings::__export_translator_world!(__VnodeTranslatorExport with_types_in $crate::translator_bindings);
        }
    };
}

/// Small helpers every plugin needs; pure, so they work in native unit tests too.
pub mod util {
    use super::{KeyValue, PodMeta};

    /// The value of annotation `key` on the pod, if set.
    pub fn annotation<'a>(meta: &'a PodMeta, key: &str) -> Option<&'a str> {
        find(&meta.annotations, key)
    }

    /// The value of label `key` on the pod, if set.
    pub fn label<'a>(meta: &'a PodMeta, key: &str) -> Option<&'a str> {
        find(&meta.labels, key)
    }

    /// The value for `key` in a list of pairs (first match, as Kubernetes keys are unique).
    pub fn find<'a>(pairs: &'a [KeyValue], key: &str) -> Option<&'a str> {
        pairs
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| kv.value.as_str())
    }

    /// Parses the simple configuration format the shipped plugins use: one `key = value` per
    /// line, `#` starts a comment, blank lines are ignored. Returns the pairs in order, or an
    /// error naming the line. Cheap enough to run on every decision (no serde in the guest).
    pub fn parse_key_values(config: &str) -> Result<Vec<(&str, &str)>, String> {
        let mut out = Vec::new();
        for (index, raw) in config.lines().enumerate() {
            let line = match raw.find('#') {
                Some(hash) => &raw[..hash],
                None => raw,
            }
            .trim();
            if line.is_empty() {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!(
                    "config line {}: expected `key = value`, found {line:?}",
                    index + 1
                ));
            };
            let key = key.trim();
            if key.is_empty() {
                return Err(format!("config line {}: empty key", index + 1));
            }
            out.push((key, value.trim()));
        }
        Ok(out)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn parses_key_values_with_comments() {
            let parsed = parse_key_values("# c\n a = 1 \n\nb= x y # trailing\n").expect("valid");
            assert_eq!(parsed, vec![("a", "1"), ("b", "x y")]);
        }

        #[test]
        fn rejects_lines_without_equals() {
            let err = parse_key_values("a = 1\nnonsense").expect_err("invalid");
            assert!(err.contains("line 2"), "{err}");
        }
    }
}

/// Builders for native unit tests of plugin logic: a realistic pod view and context.
pub mod testing {
    use super::placement::{PlacementContext, PodView, ZoneUsage};
    use super::{InstanceSpec, KeyValue, PodMeta, ZoneVswitch};

    /// A pod `default/web-0` with no labels, annotations or containers.
    pub fn pod(namespace: &str, name: &str) -> PodView {
        PodView {
            meta: PodMeta {
                namespace: namespace.into(),
                name: name.into(),
                uid: format!("uid-{namespace}-{name}"),
                labels: Vec::new(),
                annotations: Vec::new(),
                owner_kind: None,
                owner_name: None,
                creation_timestamp: "2026-01-01T00:00:00Z".into(),
            },
            containers: Vec::new(),
            init_containers: Vec::new(),
            node_selector: Vec::new(),
            tolerations: Vec::new(),
            priority_class: None,
            priority: None,
            restart_policy: "Always".into(),
        }
    }

    /// Adds an annotation.
    pub fn annotate(mut pod: PodView, key: &str, value: &str) -> PodView {
        pod.meta.annotations.push(KeyValue {
            key: key.into(),
            value: value.into(),
        });
        pod
    }

    /// Adds a label.
    pub fn label(mut pod: PodView, key: &str, value: &str) -> PodView {
        pod.meta.labels.push(KeyValue {
            key: key.into(),
            value: value.into(),
        });
        pod
    }

    /// A context in `cn-hangzhou` with the given `(zone, vswitch, running groups)`.
    pub fn context(zones: &[(&str, &str, u32)], config: &str) -> PlacementContext {
        PlacementContext {
            region: "cn-hangzhou".into(),
            zones: zones
                .iter()
                .map(|(z, v, _)| ZoneVswitch {
                    zone_id: (*z).into(),
                    vswitch_id: (*v).into(),
                })
                .collect(),
            candidate_specs: vec![
                InstanceSpec {
                    cpu_millis: 250,
                    memory_mib: 512,
                },
                InstanceSpec {
                    cpu_millis: 1000,
                    memory_mib: 2048,
                },
                InstanceSpec {
                    cpu_millis: 2000,
                    memory_mib: 4096,
                },
            ],
            usage: zones
                .iter()
                .map(|(z, _, n)| ZoneUsage {
                    zone_id: (*z).into(),
                    container_groups: *n,
                })
                .collect(),
            recent_stockouts: Vec::new(),
            previous_decisions: 0,
            node_name: "vnode".into(),
            cluster_name: "test".into(),
            config: config.into(),
        }
    }
}
