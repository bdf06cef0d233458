//! Contract versioning against real components: the shipped plugins speak the latest contract
//! (0.3.0, one encoded buffer each way), fixtures built against the frozen 0.2.0 (typed
//! arguments, no conversion) and 0.1.0 (through the host's adapter) keep loading and decide
//! identically to a 0.3.0 build of the same logic, and a component of an unknown newer version
//! (0.9.0) is refused with a message naming both versions.

mod common;

use std::sync::Arc;
use vnode_plugin_host::contract::{self, Decision};
use vnode_plugin_host::{LoadedPlugin, PluginLoader};
use vnode_plugin_host::{PluginError, PluginKind, builtin, samples};

fn bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e} (built by the build script)"))
}

#[test]
fn shipped_plugins_speak_the_latest_contract() {
    assert_eq!(contract::LATEST_VERSION, "0.3.0");
    assert_eq!(contract::SUPPORTED_VERSIONS, ["0.3.0", "0.2.0", "0.1.0"]);
    let loader = common::loader();
    for (path, kind) in [
        (builtin::ZONE_SPREAD_PATH, PluginKind::Placement),
        (builtin::TRANSLATOR_DEFAULT_PATH, PluginKind::Translator),
    ] {
        let plugin = loader
            .load_blocking(&common::source(&bytes(path)), Some(kind), "")
            .expect("loads");
        assert_eq!(
            plugin.identity().contract_version,
            contract::LATEST_VERSION,
            "{path}"
        );
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
        message.contains("vnode:plugin@0.9.0")
            && message.contains("0.3.0")
            && message.contains("0.2.0"),
        "{message}"
    );
}

fn load(loader: &PluginLoader, path: &str, kind: PluginKind, version: &str) -> Arc<LoadedPlugin> {
    let plugin = loader
        .load_blocking(&common::source(&bytes(path)), Some(kind), "")
        .unwrap_or_else(|e| panic!("{path} loads: {e}"));
    assert_eq!(plugin.identity().contract_version, version, "{path}");
    plugin
}

/// The same placement logic built against 0.1.0, 0.2.0 and 0.3.0 gives the same decision on
/// the sample pod: the typed (0.2.0) and encoded (0.3.0) paths carry every field the same way,
/// and 0.1.0's adapter loses only what 0.1.0 cannot see (the spread constraints its reason
/// does not count).
#[test]
fn every_supported_version_places_the_sample_identically() {
    let loader = common::loader();
    let (pod, context) = samples::placement_sample();
    let place = |path: &str, version: &str| {
        load(&loader, path, PluginKind::Placement, version)
            .place_blocking(&pod, context.clone())
            .expect("decides")
            .value
    };
    let v3 = place(builtin::CONTRACT_V0_3_0_PATH, "0.3.0");
    let v2 = place(builtin::CONTRACT_V0_2_0_PATH, "0.2.0");
    let v1 = place(builtin::CONTRACT_V0_1_0_PATH, "0.1.0");
    let (Decision::Accept(v3), Decision::Accept(v2), Decision::Accept(v1)) = (v3, v2, v1) else {
        panic!("every fixture accepts the sample");
    };
    assert_eq!(v3.attempts, v2.attempts);
    assert_eq!(v3.attempts, v1.attempts);
    assert_eq!(v3.attempts[0].zone_id.as_deref(), Some("cn-hangzhou-h"));
    // The reasons differ only in the contract version each fixture names.
    assert_eq!(
        v3.reason.replace("contract 0.3.0", "contract 0.2.0"),
        v2.reason
    );
    let counts = format!(
        "{}/{} ({} containers, {} zones",
        pod.meta.namespace,
        pod.meta.name,
        pod.containers.len(),
        context.zones.len()
    );
    for reason in [&v3.reason, &v2.reason, &v1.reason] {
        assert!(reason.contains(&counts), "{reason}");
    }
    assert!(
        v3.reason
            .contains(&format!("{} spread constraints", pod.topology_spread.len())),
        "the 0.3.0 plugin saw the spread constraints: {}",
        v3.reason
    );
}

/// The same translator logic built against 0.2.0 and 0.3.0 gives the same request for the
/// sample pod (the full request, every field, crosses the encoded path in `wire`'s unit
/// tests).
#[test]
fn typed_and_encoded_translators_translate_the_sample_identically() {
    let loader = common::loader();
    let translate = |path: &str, version: &str| {
        load(&loader, path, PluginKind::Translator, version)
            .translate_blocking(samples::translate_sample())
            .expect("translates")
            .value
            .expect("accepts the sample")
    };
    let mut v3 = translate(builtin::CONTRACT_V0_3_0_TRANSLATOR_PATH, "0.3.0");
    let v2 = translate(builtin::CONTRACT_V0_2_0_TRANSLATOR_PATH, "0.2.0");
    // Each fixture tags the group with the contract it speaks; everything else is the same.
    let tag = |r: &contract::ContainerGroupRequest| {
        r.tags
            .iter()
            .find(|t| t.key == "fixture.vnode.io/contract")
            .map(|t| t.value.clone())
    };
    assert_eq!(tag(&v3).as_deref(), Some("0.3.0"));
    assert_eq!(tag(&v2).as_deref(), Some("0.2.0"));
    for t in &mut v3.tags {
        if t.key == "fixture.vnode.io/contract" {
            t.value = "0.2.0".into();
        }
    }
    assert_eq!(v3, v2);
    assert_eq!(
        v3.containers.len(),
        samples::translate_sample().pod.containers.len()
    );
}
