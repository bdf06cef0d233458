//! Contract versioning against real components: the shipped plugins speak the latest contract
//! (0.2.0), a fixture built against the frozen 0.1.0 keeps loading and deciding through the
//! host's adapter, and a component of an unknown newer version (0.9.0) is refused with a
//! message naming both versions.

mod common;

use vnode_plugin_host::contract::{self, Decision};
use vnode_plugin_host::{PluginError, PluginKind, builtin, samples};

fn bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e} (built by the build script)"))
}

#[test]
fn shipped_plugins_speak_the_latest_contract() {
    assert_eq!(contract::LATEST_VERSION, "0.2.0");
    assert_eq!(contract::SUPPORTED_VERSIONS, ["0.2.0", "0.1.0"]);
    let loader = common::loader();
    for (path, kind) in [
        (builtin::ZONE_SPREAD_PATH, PluginKind::Placement),
        (builtin::TRANSLATOR_DEFAULT_PATH, PluginKind::Translator),
    ] {
        let plugin = loader
            .load_blocking(&common::source(&bytes(path)), Some(kind), "")
            .expect("loads");
        assert_eq!(plugin.identity().contract_version, "0.2.0", "{path}");
    }
}

#[test]
fn a_plugin_built_against_0_1_0_keeps_loading_and_deciding() {
    let loader = common::loader();
    let plugin = loader
        .load_blocking(
            &common::source(&bytes(builtin::CONTRACT_V0_1_0_PATH)),
            Some(PluginKind::Placement),
            "",
        )
        .expect("a 0.1.0 component loads");
    assert_eq!(plugin.identity().contract_version, "0.1.0");
    assert_eq!(plugin.identity().name, "contract-v0-1-0");
    // The latest input (with 0.2.0's topology spread) reaches it converted down; its answer
    // comes back as the latest types.
    let (pod, context) = samples::placement_sample();
    assert!(
        !pod.topology_spread.is_empty(),
        "the sample uses a 0.2.0 field"
    );
    let zones = context.zones.len();
    let decided = plugin.place_blocking(&pod, context).expect("decides");
    match decided.value {
        Decision::Accept(a) => {
            assert_eq!(a.attempts[0].zone_id.as_deref(), Some("cn-hangzhou-h"));
            assert!(
                a.reason.contains(&format!(
                    "{}/{} ({} containers, {zones} zones)",
                    pod.meta.namespace,
                    pod.meta.name,
                    pod.containers.len()
                )),
                "{}",
                a.reason
            );
        }
        other => panic!("expected accept, got {other:?}"),
    }
}

#[test]
fn an_unknown_newer_contract_is_refused_naming_both_versions() {
    let loader = common::loader();
    let err = loader
        .load_blocking(
            &common::source(&bytes(builtin::CONTRACT_FUTURE_PATH)),
            None,
            "",
        )
        .expect_err("refused");
    assert!(
        matches!(&err, PluginError::UnsupportedContractVersion { plugin, .. } if plugin == "0.9.0"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("vnode:plugin@0.9.0") && message.contains("0.2.0"),
        "{message}"
    );
}
