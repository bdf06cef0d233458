//! vnode's default translator: a resolved Kubernetes pod → one ECI `CreateContainerGroup`
//! request. The mapping (and every refusal) is documented in this crate's `README.md`.
//!
//! All the logic is plain Rust over the SDK's contract types, in [`translate()`], so it is
//! unit-tested natively; the component export at the bottom is a thin shim. JSON is parsed only
//! when a pull secret or an annotation needs it: the hot path touches typed records only.

mod annotations;
mod containers;
mod dns;
mod errors;
mod identity;
mod pull_secrets;
mod resources;
mod translate;
mod volumes;

#[cfg(test)]
mod testutil;

pub use translate::translate;

use vnode_plugin_sdk::translator::{ContainerGroupRequest, TranslateError, TranslateInput};
use vnode_plugin_sdk::{Plugin, PluginInfo, TranslatorPlugin};

/// The plugin's identity, shown by `vnode plugin check` and on every pod it translated.
pub const NAME: &str = "translator-default";

/// The component export: validates the (unused) configuration and forwards to [`translate()`].
pub struct DefaultTranslator;

impl Plugin for DefaultTranslator {
    fn info() -> PluginInfo {
        PluginInfo {
            name: NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Pod -> ECI CreateContainerGroup: containers, probes, volumes, DNS, \
                          security context, pull secrets and k8s.aliyun.com/eci-* annotations"
                .to_string(),
        }
    }

    fn init(config: String) -> Result<(), String> {
        validate_config(&config)
    }
}

impl TranslatorPlugin for DefaultTranslator {
    fn translate(input: TranslateInput) -> Result<ContainerGroupRequest, TranslateError> {
        // Not freed in Wasm: the instance is thrown away after this decision.
        let input = vnode_plugin_sdk::codec::Discarded::new(input);
        translate::translate(&input)
    }
}

/// This translator has no options: the configuration must be empty (or an empty JSON/YAML
/// object), so a typo'd option is refused at load time instead of being silently ignored.
pub fn validate_config(config: &str) -> Result<(), String> {
    match config.trim() {
        "" | "{}" => Ok(()),
        other => Err(format!(
            "translator-default takes no configuration (got {other:?}); pass an empty string"
        )),
    }
}

vnode_plugin_sdk::export_translator_plugin!(DefaultTranslator);
