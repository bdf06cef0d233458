//! The plugin contract on the host side: one `bindgen!` module per supported WIT version (Zed
//! style, `wit/v<version>/`), and flat re-exports of the **latest** version's types, which is
//! what the rest of vnode codes against (`vnode_plugin_host::contract::PodView`, …).
//!
//! Only this crate knows the generated bindings; other crates see plain Rust records.

//!
//! Versions: `wit/v0.1.0` is frozen; `wit/v0.2.0` adds `pod-view.topology-spread` (the pod's
//! `topologySpreadConstraints`, which only placement can honour on a virtual node);
//! `wit/v0.3.0` keeps 0.2.0's types and passes each decision's input and answer as one byte
//! buffer in the postcard wire format ([`wire`]).
//!
//! The re-exported types are the ones generated from 0.2.0. 0.3.0 declares the very same
//! records and variants, and its decisions cross the boundary as bytes, so the host encodes and
//! decodes these types directly for a 0.3.0 component (postcard carries no names, only the
//! shape, which is identical; `wire`'s tests decode the host's bytes with 0.3.0's own generated
//! types to prove it), and a 0.2.0 component takes them as typed arguments with no conversion.
//! A component built against 0.1.0 keeps loading: [`adapt`] converts the input down to its
//! version and its answer back up. A component of a version this host does not know is
//! refused, naming both.

mod adapt;
pub(crate) mod wire;

pub use wire::{
    decision_bytes, placement_input_bytes, translate_input_bytes, translate_result_bytes,
};

pub(crate) use adapt::{PlacementInstance, PlacementPre, TranslatorInstance, TranslatorPre};

/// Contract versions this host loads, newest first. A plugin built against another version is
/// refused with [`crate::PluginError::UnsupportedContractVersion`].
pub const SUPPORTED_VERSIONS: &[&str] = &[v0_3_0::VERSION, v0_2_0::VERSION, v0_1_0::VERSION];

/// The newest contract version. [`crate::contract`]'s re-exports are its types (generated from
/// the identical 0.2.0 declarations, see the module docs).
pub const LATEST_VERSION: &str = v0_3_0::VERSION;

/// The WIT package name shared by every version.
pub const PACKAGE: &str = "vnode:plugin";

/// `vnode:plugin@0.1.0` (`wit/v0.1.0`, frozen). The serde derives exist only for [`adapt`]'s
/// conversions from and to the latest version.
pub mod v0_1_0 {
    /// This module's contract version.
    pub const VERSION: &str = "0.1.0";

    /// The `placement-plugin` world (also owns the shared `types` and `host` interfaces).
    pub mod placement {
        wasmtime::component::bindgen!({
            path: "../../wit/v0.1.0",
            world: "vnode:plugin/placement-plugin@0.1.0",
            additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
        });
    }

    /// The `translator-plugin` world; shares `types` and `host` with [`placement`].
    pub mod translator {
        wasmtime::component::bindgen!({
            path: "../../wit/v0.1.0",
            world: "vnode:plugin/translator-plugin@0.1.0",
            additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
            with: {
                "vnode:plugin/types": super::placement::vnode::plugin::types,
                "vnode:plugin/host": super::placement::vnode::plugin::host,
            },
        });
    }
}

/// `vnode:plugin@0.2.0` (`wit/v0.2.0`, frozen): typed arguments. Its types are also the
/// latest version's (0.3.0 declares them unchanged), so they are what the crate re-exports.
pub mod v0_2_0 {
    /// This module's contract version.
    pub const VERSION: &str = "0.2.0";

    /// The `placement-plugin` world (also owns the shared `types` and `host` interfaces).
    pub mod placement {
        wasmtime::component::bindgen!({
            path: "../../wit/v0.2.0",
            world: "vnode:plugin/placement-plugin@0.2.0",
            additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
        });
    }

    /// The `translator-plugin` world; shares `types` and `host` with [`placement`].
    pub mod translator {
        wasmtime::component::bindgen!({
            path: "../../wit/v0.2.0",
            world: "vnode:plugin/translator-plugin@0.2.0",
            additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
            with: {
                "vnode:plugin/types": super::placement::vnode::plugin::types,
                "vnode:plugin/host": super::placement::vnode::plugin::host,
            },
        });
    }
}

/// `vnode:plugin@0.3.0` (`wit/v0.3.0`): the latest version. `place` and `translate` take and
/// return one postcard-encoded buffer ([`wire`]); the records these bindings generate are used
/// only by tests (the host encodes the identical 0.2.0-generated types).
pub mod v0_3_0 {
    /// This module's contract version.
    pub const VERSION: &str = "0.3.0";

    /// The `placement-plugin` world (also owns the shared `types` and `host` interfaces).
    pub mod placement {
        wasmtime::component::bindgen!({
            path: "../../wit/v0.3.0",
            world: "vnode:plugin/placement-plugin@0.3.0",
            additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
        });
    }

    /// The `translator-plugin` world; shares `types` and `host` with [`placement`].
    pub mod translator {
        wasmtime::component::bindgen!({
            path: "../../wit/v0.3.0",
            world: "vnode:plugin/translator-plugin@0.3.0",
            additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
            with: {
                "vnode:plugin/types": super::placement::vnode::plugin::types,
                "vnode:plugin/host": super::placement::vnode::plugin::host,
            },
        });
    }
}

// The latest version's types, generated from 0.2.0's identical declarations (module docs).
use v0_2_0 as latest;

// Shared types (`interface types`, `interface host`).
pub use latest::placement::vnode::plugin::host::LogLevel;
pub use latest::placement::vnode::plugin::types::{
    Attempt, InstanceSpec, KeyValue, PluginInfo, PodMeta, ResourceList, ResourceRequirements,
    Sizing, SpotStrategy, Toleration, ZoneVswitch,
};

// Placement (`interface placement`).
pub use latest::placement::exports::vnode::plugin::placement::{
    Accepted, ContainerView, Decision, Deferral, LabelSelectorRequirement, PlacementContext,
    PodView, Stockout, TopologySpreadConstraint, ZoneUsage,
};

// Translator input (`interface pod`).
pub use latest::translator::vnode::plugin::pod::{
    ClaimSource, Container, ContainerPort, DnsConfig, DnsOption, EmptyDirSource, EnvValue, EnvVar,
    File, FileSet, GrpcAction, Handler, HostAlias, HostPathSource, HttpGetAction, HttpHeader,
    IntOrString, Lifecycle, NfsSource, PodSecurityContext, Probe, PullSecret, ResolvedPod,
    SecurityContext, Sysctl, TcpSocketAction, Volume, VolumeMount, VolumeSource,
};

// Translator output (`interface request`).
pub use latest::translator::vnode::plugin::request::{
    ContainerGroupRequest, EciConfigFile, EciConfigFileVolume, EciContainer, EciDisk, EciDnsConfig,
    EciEip, EciEmptyDir, EciEnv, EciFlex, EciHandler, EciHostAlias, EciHostPath, EciHttpGet,
    EciNfs, EciPort, EciProbe, EciSecurityContext, EciTcpSocket, EciVolume, EciVolumeKind,
    EciVolumeMount, RegistryCredential,
};

// Translator call (`interface translator`).
pub use latest::translator::exports::vnode::plugin::translator::{
    FieldError, NodeDefaults, TranslateError, TranslateInput,
};
