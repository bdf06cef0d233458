//! Write vnode plugins in Rust.
//!
//! The contract (`wit/v0.3.0`, package `vnode:plugin@0.3.0`) is generated here once for both
//! worlds. A placement policy is one function plus one macro call:
//!
//! ```text
//! use vnode_plugin_sdk::placement::{Decision, PlacementContext, PodView};
//! use vnode_plugin_sdk::prelude::*;
//!
//! fn place(pod: &PodView, ctx: &PlacementContext) -> Decision {
//!     match ctx.zones_by_usage().first() {
//!         Some(zone) => accept(vec![attempt_in(zone)], "least used zone"),
//!         None => accept(vec![attempt_anywhere(Vec::new())], "ECI chooses"),
//!     }
//! }
//!
//! vnode_plugin_sdk::placement_plugin!(MyPolicy {
//!     name: "my-policy",
//!     description: "Least used zone first",
//!     place: place,
//! });
//! ```
//!
//! With `config: Config::parse,` (any `fn(&str) -> Result<C, String>`) the configuration string
//! is validated by `init` and the policy takes `&C` as a third argument. The traits
//! ([`Plugin`], [`PlacementPlugin`], [`TranslatorPlugin`]) with [`export_placement_plugin!`] /
//! [`export_translator_plugin!`] remain for plugins that want full control.
//!
//! Helpers: [`quantity`] (effective requests, `500m`/`1Gi` parsing), [`pod::PodExt`] and
//! [`pod::ContextExt`] (lookups), [`toleration`], [`spec`] (`2-4Gi`, `eci-use-specs`, smallest
//! fitting spec), [`eci`] (the `k8s.aliyun.com/eci-*` annotations), [`decide`] (answers),
//! [`util`] (config parsing) and [`testing`] (builders for native unit tests).
//!
//! In 0.3.0 a decision's input and answer cross the component boundary as one encoded buffer
//! each way (`wit/README.md`, "The encoding of 0.3.0"); the export glue ([`codec`]) decodes
//! the input into the same typed records 0.2.0 passed as arguments and encodes the answer, so
//! a plugin's code never sees the bytes. Input that does not decode is answered, never guessed
//! at: a placement plugin refuses the pod naming the problem, a translator answers `internal`.
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the output `.wasm` is a component.
//! The crate also compiles for the host target, so a plugin's logic can be unit-tested natively
//! (`cargo test`); only calling [`host::log`] outside Wasm panics, so keep logging at the edges
//! or use [`log`], which is a no-op natively.

/// The contract version this SDK builds against (the `vnode:plugin` package version).
pub const CONTRACT_VERSION: &str = "0.3.0";

// The generated code names this crate by its public path (so that plugin crates expanding the
// export macros resolve it); make that path valid inside the crate too.
extern crate self as vnode_plugin_sdk;

#[doc(hidden)]
pub mod placement_bindings {
    wit_bindgen::generate!({
        path: "../../wit/v0.3.0",
        world: "vnode:plugin/placement-plugin@0.3.0",
        pub_export_macro: true,
        export_macro_name: "__export_placement_world",
        default_bindings_module: "vnode_plugin_sdk::placement_bindings",
        // The shared interfaces are generated once (with the translator world), so a
        // `KeyValue` or `Attempt` is the same Rust type in both worlds.
        with: {
            "vnode:plugin/types@0.3.0": vnode_plugin_sdk_translator::vnode::plugin::types,
            "vnode:plugin/host@0.3.0": vnode_plugin_sdk_translator::vnode::plugin::host,
        },
        // serde: the 0.3.0 encoding is postcard over these derives (see `codec`).
        additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
        generate_all,
        // 0.3.0's functions take bytes, so no function names the records: generate them anyway.
        generate_unused_types: true,
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
        Accepted, ContainerView, Decision, Deferral, LabelSelectorRequirement, PlacementContext,
        PlacementInput, PodView, Stockout, TopologySpreadConstraint, ZoneUsage,
    };
}

/// The translator world's types (`interfaces pod`, `request` and `translator`).
pub mod translator {
    pub use crate::translator_bindings::exports::vnode::plugin::translator::{
        FieldError, NodeDefaults, TranslateError, TranslateInput, TranslateResult,
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
        fn place(input: Vec<u8>) -> Vec<u8> {
            crate::codec::place::<T>(&input)
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
        fn translate(input: Vec<u8>) -> Vec<u8> {
            crate::codec::translate::<T>(&input)
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

pub mod allocator;
pub mod codec;
pub mod decide;
pub mod eci;

/// Every plugin built with the SDK allocates with [`allocator::PluginAllocator`] (a bump
/// allocator: each decision runs in a fresh instance that is thrown away afterwards), so a
/// plugin crate must not declare a `#[global_allocator]` of its own (two do not link).
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: allocator::PluginAllocator = allocator::PluginAllocator::new();
pub mod pod;
pub mod quantity;
pub mod spec;
pub mod testing;
pub mod toleration;
pub mod util;

/// Everything a policy usually needs, in one `use vnode_plugin_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::decide::{accept, attempt_anywhere, attempt_in, defer, refuse};
    pub use crate::pod::{ContextExt, PodExt};
    pub use crate::quantity::Resources;
    pub use crate::toleration::Taint;
    pub use crate::{
        Attempt, InstanceSpec, KeyValue, PluginInfo, Sizing, SpotStrategy, ZoneVswitch,
    };
}

/// The plugin's version when a `*_plugin!` macro is not given one: the plugin crate's own
/// `Cargo.toml` version (expanded in the plugin crate, so `env!` sees its package).
#[doc(hidden)]
#[macro_export]
macro_rules! __plugin_version {
    () => {
        env!("CARGO_PKG_VERSION")
    };
    ($version:expr) => {
        $version
    };
}

/// Defines `pub struct $Name` as a placement plugin whose policy is one function, and exports
/// it as this component's `placement-plugin` world.
///
/// ```text
/// placement_plugin!(Name {
///     name: "my-policy",
///     version: "1.0.0",                 // optional: defaults to the crate's version
///     description: "what it does",
///     config: Config::parse,            // optional: fn(&str) -> Result<C, String>
///     place: decide,                    // fn(&PodView, &PlacementContext[, &C]) -> Decision
/// });
/// ```
///
/// Without `config`, only an empty configuration string is accepted. With it, `init` runs the
/// parser (so a bad configuration refuses the load) and every decision parses the string again
/// (each decision runs in a fresh instance; nothing `init` computed survives).
#[macro_export]
macro_rules! placement_plugin {
    ($(#[$attr:meta])* $ty:ident {
        name: $name:expr,
        $(version: $version:expr,)?
        description: $desc:expr,
        config: $parse:expr,
        place: $place:expr $(,)?
    }) => {
        $(#[$attr])*
        pub struct $ty;
        impl $crate::Plugin for $ty {
            fn info() -> $crate::PluginInfo {
                $crate::PluginInfo {
                    name: ::std::string::String::from($name),
                    version: ::std::string::String::from($crate::__plugin_version!($($version)?)),
                    description: ::std::string::String::from($desc),
                }
            }
            fn init(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                ($parse)(config.as_str()).map(|_| ())
            }
        }
        impl $crate::PlacementPlugin for $ty {
            fn place(
                pod: $crate::placement::PodView,
                context: $crate::placement::PlacementContext,
            ) -> $crate::placement::Decision {
                // Not freed in Wasm: the instance is thrown away after this decision.
                let (pod, context) = (
                    $crate::codec::Discarded::new(pod),
                    $crate::codec::Discarded::new(context),
                );
                match ($parse)(context.config.as_str()) {
                    ::std::result::Result::Ok(config) => {
                        let config = $crate::codec::Discarded::new(config);
                        ($place)(&*pod, &*context, &*config)
                    }
                    // `init` accepted this string, so only a host bug gets here.
                    ::std::result::Result::Err(e) => $crate::placement::Decision::Refuse(
                        ::std::format!("{}: invalid configuration: {}", $name, e),
                    ),
                }
            }
        }
        $crate::export_placement_plugin!($ty);
    };
    ($(#[$attr:meta])* $ty:ident {
        name: $name:expr,
        $(version: $version:expr,)?
        description: $desc:expr,
        place: $place:expr $(,)?
    }) => {
        $crate::placement_plugin!($(#[$attr])* $ty {
            name: $name,
            $(version: $version,)?
            description: $desc,
            config: |config: &str| $crate::__no_config($name, config),
            place: |pod: &$crate::placement::PodView, context: &$crate::placement::PlacementContext, _: &()| ($place)(pod, context),
        });
    };
}

/// Defines `pub struct $Name` as a translator whose logic is one function, and exports it as
/// this component's `translator-plugin` world. Same fields as [`placement_plugin!`], with
/// `translate: fn(&TranslateInput[, &C]) -> Result<ContainerGroupRequest, TranslateError>`.
#[macro_export]
macro_rules! translator_plugin {
    ($(#[$attr:meta])* $ty:ident {
        name: $name:expr,
        $(version: $version:expr,)?
        description: $desc:expr,
        config: $parse:expr,
        translate: $translate:expr $(,)?
    }) => {
        $(#[$attr])*
        pub struct $ty;
        impl $crate::Plugin for $ty {
            fn info() -> $crate::PluginInfo {
                $crate::PluginInfo {
                    name: ::std::string::String::from($name),
                    version: ::std::string::String::from($crate::__plugin_version!($($version)?)),
                    description: ::std::string::String::from($desc),
                }
            }
            fn init(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                ($parse)(config.as_str()).map(|_| ())
            }
        }
        impl $crate::TranslatorPlugin for $ty {
            fn translate(
                input: $crate::translator::TranslateInput,
            ) -> ::std::result::Result<
                $crate::translator::ContainerGroupRequest,
                $crate::translator::TranslateError,
            > {
                // Not freed in Wasm: the instance is thrown away after this decision.
                let input = $crate::codec::Discarded::new(input);
                match ($parse)(input.config.as_str()) {
                    ::std::result::Result::Ok(config) => {
                        let config = $crate::codec::Discarded::new(config);
                        ($translate)(&*input, &*config)
                    }
                    ::std::result::Result::Err(e) => ::std::result::Result::Err(
                        $crate::translator::TranslateError::Internal(::std::format!(
                            "{}: invalid configuration: {}",
                            $name, e
                        )),
                    ),
                }
            }
        }
        $crate::export_translator_plugin!($ty);
    };
    ($(#[$attr:meta])* $ty:ident {
        name: $name:expr,
        $(version: $version:expr,)?
        description: $desc:expr,
        translate: $translate:expr $(,)?
    }) => {
        $crate::translator_plugin!($(#[$attr])* $ty {
            name: $name,
            $(version: $version,)?
            description: $desc,
            config: |config: &str| $crate::__no_config($name, config),
            translate: |input: &$crate::translator::TranslateInput, _: &()| ($translate)(input),
        });
    };
}

/// The configuration check of a plugin that takes none: empty (or `{}`) only, so a typo'd
/// option is refused at load time instead of silently ignored.
#[doc(hidden)]
pub fn __no_config(name: &str, config: &str) -> Result<(), String> {
    match config.trim() {
        "" | "{}" => Ok(()),
        other => Err(format!(
            "{name} takes no configuration (got {other:?}); pass an empty string"
        )),
    }
}

// Natively only: two plugins cannot both export a world from one Wasm module.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod macro_tests {
    use crate::placement::{Decision, PlacementContext, PodView};
    use crate::prelude::*;
    use crate::testing::{context, pod};
    use crate::{PlacementPlugin, Plugin};

    fn first_zone(_pod: &PodView, ctx: &PlacementContext) -> Decision {
        match ctx.zones_by_usage().first() {
            Some(zone) => accept(vec![attempt_in(zone)], "least used"),
            None => refuse("no zones"),
        }
    }

    crate::placement_plugin!(NoConfig {
        name: "no-config",
        description: "test",
        place: first_zone,
    });

    fn parse_limit(text: &str) -> Result<u32, String> {
        match text.trim() {
            "" => Ok(1),
            t => t.parse().map_err(|_| format!("{t:?} is not a number")),
        }
    }

    crate::placement_plugin!(WithConfig {
        name: "with-config",
        version: "9.9.9",
        description: "test",
        config: parse_limit,
        place: |_: &PodView, _: &PlacementContext, limit: &u32| refuse(format!("limit {limit}")),
    });

    #[test]
    fn one_function_policies() {
        let info = NoConfig::info();
        assert_eq!(info.name, "no-config");
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        assert!(NoConfig::init(String::new()).is_ok());
        assert!(
            NoConfig::init("x = 1".into())
                .expect_err("no config")
                .contains("no-config")
        );
        let ctx = context(&[("z1", "v1", 2), ("z2", "v2", 0)], "");
        match NoConfig::place(pod("d", "w"), ctx) {
            Decision::Accept(a) => assert_eq!(a.attempts[0].zone_id.as_deref(), Some("z2")),
            other => panic!("{other:?}"),
        }

        assert_eq!(WithConfig::info().version, "9.9.9");
        assert!(WithConfig::init("7".into()).is_ok());
        assert!(
            WithConfig::init("many".into())
                .expect_err("bad")
                .contains("many")
        );
        let ctx = context(&[], "7");
        assert_eq!(WithConfig::place(pod("d", "w"), ctx), refuse("limit 7"));
        let ctx = context(&[], "many");
        match WithConfig::place(pod("d", "w"), ctx) {
            Decision::Refuse(r) => assert!(r.contains("invalid configuration"), "{r}"),
            other => panic!("{other:?}"),
        }
    }
}
