//! `vnode plugin new NAME [--kind placement|translator] [--dir DIR]`: writes a ready plugin
//! crate that builds with one command into a component `vnode plugin check` accepts.
//!
//! The crate is **self-contained**: the SDK's source (`sdk/`) and the contract's WIT (`wit/`)
//! this `vnode` binary was built with are vendored into it, so it builds anywhere (no checkout of
//! this repository, no git dependency), always against a contract version this `vnode` loads.
//! The only outside dependency is `wit-bindgen` from crates.io; a `Cargo.lock` pinned to the
//! versions the repository's own plugins use comes along, so a machine that built vnode
//! already has every crate in its cargo cache (`cargo build --offline` works).
//! Updating the SDK later means re-running `vnode plugin new` elsewhere and copying `sdk/` and
//! `wit/` over.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::KindArg;

#[derive(clap::Args)]
pub struct NewArgs {
    /// Plugin name: lowercase letters, digits and `-` (also the crate name).
    pub name: String,
    /// Which world the plugin implements.
    #[arg(long, value_enum, default_value_t = KindArg::Placement)]
    pub kind: KindArg,
    /// Directory to create the crate in (default: `./NAME`). Must not exist or be empty.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// One vendored file: path inside the new crate and its content.
type Vendored = (&'static str, &'static str);

macro_rules! repo_file {
    ($rel:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../", $rel))
    };
}

/// The SDK's source files, as built into this binary. A unit test checks the list against the
/// directory, so a new SDK module cannot be forgotten here.
const SDK_SOURCES: &[Vendored] = &[
    ("lib.rs", repo_file!("plugins/vnode-plugin-sdk/src/lib.rs")),
    (
        "codec.rs",
        repo_file!("plugins/vnode-plugin-sdk/src/codec.rs"),
    ),
    (
        "allocator.rs",
        repo_file!("plugins/vnode-plugin-sdk/src/allocator.rs"),
    ),
    (
        "decide.rs",
        repo_file!("plugins/vnode-plugin-sdk/src/decide.rs"),
    ),
    ("eci.rs", repo_file!("plugins/vnode-plugin-sdk/src/eci.rs")),
    ("pod.rs", repo_file!("plugins/vnode-plugin-sdk/src/pod.rs")),
    (
        "quantity.rs",
        repo_file!("plugins/vnode-plugin-sdk/src/quantity.rs"),
    ),
    (
        "spec.rs",
        repo_file!("plugins/vnode-plugin-sdk/src/spec.rs"),
    ),
    (
        "testing.rs",
        repo_file!("plugins/vnode-plugin-sdk/src/testing.rs"),
    ),
    (
        "toleration.rs",
        repo_file!("plugins/vnode-plugin-sdk/src/toleration.rs"),
    ),
    (
        "util.rs",
        repo_file!("plugins/vnode-plugin-sdk/src/util.rs"),
    ),
];

const SDK_TRANSLATOR_SOURCES: &[Vendored] = &[(
    "lib.rs",
    repo_file!("plugins/vnode-plugin-sdk-translator/src/lib.rs"),
)];

/// The contract versions the SDK's bindings are generated from (`wit/v<version>/`).
const WIT: &[Vendored] = &[
    ("v0.3.0/types.wit", repo_file!("wit/v0.3.0/types.wit")),
    (
        "v0.3.0/placement.wit",
        repo_file!("wit/v0.3.0/placement.wit"),
    ),
    (
        "v0.3.0/translator.wit",
        repo_file!("wit/v0.3.0/translator.wit"),
    ),
];

/// The repository plugins' lockfile: the scaffold resolves to the same, already cached crates.
const LOCKFILE: &str = repo_file!("plugins/Cargo.lock");

/// `wit-bindgen` as the repository's plugins depend on it (checked by a unit test against
/// `plugins/Cargo.toml`).
const WIT_BINDGEN_DEP: &str = r#"wit-bindgen = { version = "0.61", default-features = false, features = ["macros", "realloc", "std"] }"#;

/// `serde` as the repository's plugins depend on it: the generated contract types derive it.
const SERDE_DEP: &str =
    r#"serde = { version = "1", default-features = false, features = ["derive", "std"] }"#;

/// `postcard` as the repository's plugins depend on it: the 0.3.0 encoding (the SDK's `codec`).
const POSTCARD_DEP: &str =
    r#"postcard = { version = "1", default-features = false, features = ["alloc"] }"#;

const TOOLCHAIN: &str = repo_file!("rust-toolchain.toml");

/// The repository plugins' link settings (an initial linear memory that holds the SDK
/// allocator's arena, so instances never grow their memory).
const CARGO_CONFIG: &str = repo_file!("plugins/.cargo/config.toml");

pub async fn run(args: NewArgs) -> Result<()> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    let wasm = scaffold(&args.name, args.kind, &dir)?;
    let shown = dir.display();
    println!(
        "created {} plugin `{}` in {shown}",
        kind_word(args.kind),
        args.name
    );
    println!();
    println!("  cd {shown}");
    println!("  cargo test                                        # the policy, natively");
    println!("  cargo build --release --target wasm32-wasip2      # the component");
    println!("  vnode plugin check {}", wasm.display());
    if matches!(args.kind, KindArg::Placement) {
        println!(
            "  vnode plugin simulate --plugin {} --pods PODS.yaml",
            wasm.display()
        );
    }
    Ok(())
}

fn kind_word(kind: KindArg) -> &'static str {
    match kind {
        KindArg::Placement => "placement",
        KindArg::Translator => "translator",
    }
}

/// Writes the crate; returns the path (relative to the crate) of the component it builds.
pub fn scaffold(name: &str, kind: KindArg, dir: &Path) -> Result<PathBuf> {
    validate_name(name)?;
    if dir.exists() {
        let mut entries =
            std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} already exists and is not empty; pick another --dir",
                dir.display()
            );
        }
    }
    let crate_ident = name.replace('-', "_");
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    let mut add = |path: &str, content: String| files.push((dir.join(path), content));

    add("Cargo.toml", manifest(name));
    add("Cargo.lock", LOCKFILE.to_string());
    add("rust-toolchain.toml", TOOLCHAIN.to_string());
    add(".cargo/config.toml", CARGO_CONFIG.to_string());
    add(".gitignore", "/target\n".to_string());
    add("README.md", readme(name, kind));
    let (lib, test) = match kind {
        KindArg::Placement => (PLACEMENT_LIB, PLACEMENT_TESTS),
        KindArg::Translator => (TRANSLATOR_LIB, TRANSLATOR_TESTS),
    };
    add("src/lib.rs", lib.replace("__NAME__", name));
    add("src/tests.rs", test.replace("__NAME__", name));
    add("pods.yaml", SAMPLE_PODS.to_string());
    add("sdk/vnode-plugin-sdk/Cargo.toml", sdk_manifest());
    for (file, content) in SDK_SOURCES {
        add(
            &format!("sdk/vnode-plugin-sdk/src/{file}"),
            (*content).to_string(),
        );
    }
    add(
        "sdk/vnode-plugin-sdk-translator/Cargo.toml",
        sdk_translator_manifest(),
    );
    for (file, content) in SDK_TRANSLATOR_SOURCES {
        add(
            &format!("sdk/vnode-plugin-sdk-translator/src/{file}"),
            (*content).to_string(),
        );
    }
    for (file, content) in WIT {
        add(&format!("wit/{file}"), (*content).to_string());
    }
    for (path, content) in &files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(PathBuf::from(format!(
        "target/wasm32-wasip2/release/{crate_ident}.wasm"
    )))
}

fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--");
    if !ok {
        bail!(
            "invalid plugin name {name:?}: use lowercase letters, digits and single dashes, starting with a letter (e.g. `gpu-first`)"
        );
    }
    if matches!(
        name,
        "vnode-plugin-sdk" | "vnode-plugin-sdk-translator" | "test" | "core" | "std"
    ) {
        bail!("{name:?} is reserved; pick another name");
    }
    Ok(())
}

fn manifest(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
rust-version = "1.95"
publish = false

[lib]
# cdylib: the Wasm component; rlib: `cargo test` runs the policy natively.
crate-type = ["cdylib", "rlib"]

[dependencies]
vnode-plugin-sdk = {{ path = "sdk/vnode-plugin-sdk" }}

# This crate is a workspace of its own (with the vendored SDK under sdk/).
[workspace]
resolver = "3"

# Small, fast guests (the same settings as vnode's own plugins).
[profile.release]
opt-level = 3
lto = true
codegen-units = 1
panic = "abort"
debug = false
strip = true
"#
    )
}

fn sdk_manifest() -> String {
    format!(
        r#"[package]
name = "vnode-plugin-sdk"
description = "Vendored by `vnode plugin new`: write vnode plugins in Rust"
version = "0.1.0"
edition = "2024"
rust-version = "1.95"
publish = false

[dependencies]
{WIT_BINDGEN_DEP}
{SERDE_DEP}
{POSTCARD_DEP}
vnode-plugin-sdk-translator = {{ path = "../vnode-plugin-sdk-translator" }}
"#
    )
}

fn sdk_translator_manifest() -> String {
    format!(
        r#"[package]
name = "vnode-plugin-sdk-translator"
description = "Vendored by `vnode plugin new`: implementation detail of vnode-plugin-sdk"
version = "0.1.0"
edition = "2024"
rust-version = "1.95"
publish = false

[dependencies]
{WIT_BINDGEN_DEP}
{SERDE_DEP}
"#
    )
}

fn readme(name: &str, kind: KindArg) -> String {
    let ident = name.replace('-', "_");
    let simulate = match kind {
        KindArg::Placement => format!(
            "vnode plugin simulate --plugin target/wasm32-wasip2/release/{ident}.wasm --pods pods.yaml\n"
        ),
        KindArg::Translator => format!(
            "vnode plugin simulate --plugin PLACEMENT.wasm --translator target/wasm32-wasip2/release/{ident}.wasm --pods pods.yaml\n"
        ),
    };
    format!(
        r#"# {name}

A vnode {kind} plugin, created by `vnode plugin new`. The policy is `src/lib.rs`; its tests are
`src/tests.rs`.

```sh
cargo test                                       # run the policy natively
cargo build --release --target wasm32-wasip2     # build the component
vnode plugin check target/wasm32-wasip2/release/{ident}.wasm
{simulate}```

Deploy: copy the `.wasm` into the daemon's plugin directory (hot-reloaded).

`sdk/` and `wit/` are vendored copies of the vnode plugin SDK and the contract this plugin was
created against; do not edit them.
"#,
        kind = kind_word(kind),
    )
}

const PLACEMENT_LIB: &str = r#"//! `__NAME__`: a vnode placement policy.
//!
//! Every pod gets one attempt per configured zone, least used zone first. Pods that opt in
//! with the label or annotation `example.com/spot: "true"` run on spot capacity, with
//! on-demand as the last resort.

use vnode_plugin_sdk::placement::{Decision, PlacementContext, PodView};
use vnode_plugin_sdk::prelude::*;

/// Label or annotation by which a pod opts into spot capacity.
pub const SPOT_OPT_IN: &str = "example.com/spot";

/// The policy.
pub fn place(pod: &PodView, ctx: &PlacementContext) -> Decision {
    let spot = match pod.flag(SPOT_OPT_IN) {
        Ok(flag) => flag.unwrap_or(false),
        Err(e) => return refuse(e),
    };
    let zones = ctx.zones_by_usage();
    let Some(first) = zones.first() else {
        return accept(vec![attempt_anywhere(Vec::new())], "no zones configured: ECI chooses");
    };
    let mut attempts: Vec<Attempt> = zones
        .iter()
        .map(|zone| Attempt {
            spot: if spot { SpotStrategy::SpotAsPriceGo } else { SpotStrategy::OnDemand },
            ..attempt_in(zone)
        })
        .collect();
    if spot {
        attempts.push(attempt_in(first));
    }
    let capacity = if spot { "spot" } else { "on-demand" };
    accept(
        attempts,
        format!("{capacity} in the least used zone {} first", first.zone_id),
    )
}

vnode_plugin_sdk::placement_plugin!(
    /// The exported plugin.
    Policy {
        name: "__NAME__",
        description: "Least used zone first; spot for pods that opt in with example.com/spot",
        place: place,
    }
);

#[cfg(test)]
mod tests;
"#;

const PLACEMENT_TESTS: &str = r#"use super::*;
use vnode_plugin_sdk::testing::{context, label, pod};

const ZONES: &[(&str, &str, u32)] = &[("cn-hangzhou-h", "vsw-h", 4), ("cn-hangzhou-i", "vsw-i", 1)];

fn accepted(d: Decision) -> vnode_plugin_sdk::placement::Accepted {
    match d {
        Decision::Accept(a) => a,
        other => panic!("expected accept, got {other:?}"),
    }
}

#[test]
fn least_used_zone_first_on_demand() {
    let a = accepted(place(&pod("shop", "web"), &context(ZONES, "")));
    assert_eq!(a.attempts[0].zone_id.as_deref(), Some("cn-hangzhou-i"));
    assert_eq!(a.attempts.len(), 2);
    assert!(a.attempts.iter().all(|t| t.spot == SpotStrategy::OnDemand));
}

#[test]
fn opted_in_pods_run_on_spot_with_an_on_demand_fallback() {
    let p = label(pod("batch", "job"), SPOT_OPT_IN, "true");
    let a = accepted(place(&p, &context(ZONES, "")));
    assert_eq!(a.attempts[0].spot, SpotStrategy::SpotAsPriceGo);
    assert_eq!(a.attempts.last().map(|t| t.spot), Some(SpotStrategy::OnDemand));
}

#[test]
fn a_malformed_opt_in_is_refused() {
    let p = label(pod("batch", "job"), SPOT_OPT_IN, "maybe");
    assert!(matches!(place(&p, &context(ZONES, "")), Decision::Refuse(_)));
}
"#;

const TRANSLATOR_LIB: &str = r#"//! `__NAME__`: a minimal vnode translator: containers (image, command, arguments, working
//! directory, requests, volume mounts), emptyDir and file volumes (ConfigMap, Secret,
//! projected, downward API), sizing and spot from the placement attempt.
//!
//! A starting point: what it does not map yet (host namespaces, NFS, host paths, claims) is
//! refused with the field's name rather than dropped silently.

use vnode_plugin_sdk::translator::{
    Container, ContainerGroupRequest, EciConfigFile, EciConfigFileVolume, EciContainer,
    EciEmptyDir, EciVolume, EciVolumeKind, EciVolumeMount, FieldError, TranslateError,
    TranslateInput, Volume, VolumeSource,
};
use vnode_plugin_sdk::util::base64_encode;
use vnode_plugin_sdk::{Sizing, SpotStrategy};

fn unsupported(field: String, message: &str) -> TranslateError {
    TranslateError::Unsupported(FieldError {
        field,
        message: message.into(),
    })
}

fn container(c: &Container) -> EciContainer {
    let requests = &c.resources.requests;
    EciContainer {
        name: c.name.clone(),
        image: c.image.clone(),
        command: c.command.clone(),
        args: c.args.clone(),
        working_dir: c.working_dir.clone(),
        cpu: requests.cpu_millis.map(|m| m as f64 / 1000.0),
        memory: requests.memory_bytes.map(|b| b as f64 / (1u64 << 30) as f64),
        gpu: requests.gpu,
        image_pull_policy: c.image_pull_policy.clone(),
        env: Vec::new(),
        ports: Vec::new(),
        volume_mounts: c
            .volume_mounts
            .iter()
            .map(|m| EciVolumeMount {
                name: m.name.clone(),
                mount_path: m.mount_path.clone(),
                sub_path: m.sub_path.clone(),
                read_only: m.read_only,
                mount_propagation: m.mount_propagation.clone(),
            })
            .collect(),
        liveness_probe: None,
        readiness_probe: None,
        startup_probe: None,
        post_start: None,
        pre_stop: None,
        security_context: None,
        stdin: c.stdin,
        stdin_once: c.stdin_once,
        tty: c.tty,
        termination_message_path: None,
        termination_message_policy: None,
    }
}

fn volume(index: usize, v: &Volume) -> Result<EciVolume, TranslateError> {
    let kind = match &v.source {
        VolumeSource::EmptyDir(e) => EciVolumeKind::EmptyDir(EciEmptyDir {
            medium: e.medium.clone(),
            size_limit: e.size_limit.clone(),
        }),
        VolumeSource::ConfigMap(set)
        | VolumeSource::Secret(set)
        | VolumeSource::Projected(set)
        | VolumeSource::DownwardApi(set) => EciVolumeKind::ConfigFile(EciConfigFileVolume {
            default_mode: set.default_mode,
            files: set
                .files
                .iter()
                .map(|f| EciConfigFile {
                    path: f.path.clone(),
                    content_base64: base64_encode(&f.content),
                    mode: f.mode,
                })
                .collect(),
        }),
        _ => {
            return Err(unsupported(
                format!("spec.volumes[{index}]"),
                "this translator maps emptyDir and file volumes only",
            ));
        }
    };
    Ok(EciVolume {
        name: v.name.clone(),
        kind,
    })
}

/// The translation.
pub fn translate(input: &TranslateInput) -> Result<ContainerGroupRequest, TranslateError> {
    let pod = &input.pod;
    if pod.host_network || pod.host_pid || pod.host_ipc {
        return Err(unsupported(
            "spec.hostNetwork".into(),
            "ECI has no host namespaces",
        ));
    }
    let volumes = pod
        .volumes
        .iter()
        .enumerate()
        .map(|(i, v)| volume(i, v))
        .collect::<Result<Vec<_>, _>>()?;
    let attempt = &input.attempt;
    let (cpu, memory, instance_types) = match &attempt.sizing {
        Sizing::Auto => (None, None, Vec::new()),
        Sizing::Spec(s) => (
            Some(s.cpu_millis as f64 / 1000.0),
            Some(s.memory_mib as f64 / 1024.0),
            Vec::new(),
        ),
        Sizing::InstanceTypes(types) => (None, None, types.clone()),
    };
    let (spot_strategy, spot_price_limit) = match attempt.spot {
        SpotStrategy::OnDemand => (None, None),
        SpotStrategy::SpotAsPriceGo => (Some("SpotAsPriceGo".to_string()), None),
        SpotStrategy::SpotWithPriceLimit(limit) => {
            (Some("SpotWithPriceLimit".to_string()), Some(limit))
        }
    };
    let vswitch_ids = if attempt.vswitch_ids.is_empty() {
        input.node.zones.iter().map(|z| z.vswitch_id.clone()).collect()
    } else {
        attempt.vswitch_ids.clone()
    };
    Ok(ContainerGroupRequest {
        name: format!("{}-{}", pod.meta.namespace, pod.meta.name),
        client_token: pod.meta.uid.clone(),
        zone_id: attempt.zone_id.clone(),
        vswitch_ids,
        security_group_id: Some(input.node.security_group_id.clone()),
        schedule_strategy: attempt.schedule_strategy.clone(),
        cpu,
        memory,
        instance_types,
        compute_categories: attempt.compute_categories.clone(),
        restart_policy: pod.restart_policy.clone(),
        spot_strategy,
        spot_price_limit,
        spot_duration_hours: attempt.spot_duration_hours,
        tags: attempt.extra_tags.clone(),
        image_registry_credentials: Vec::new(),
        containers: pod.containers.iter().map(container).collect(),
        init_containers: pod.init_containers.iter().map(container).collect(),
        volumes,
        dns_policy: None,
        dns_config: None,
        host_aliases: Vec::new(),
        hostname: None,
        sysctls: Vec::new(),
        host_sysctls: Vec::new(),
        active_deadline_seconds: pod.active_deadline_seconds,
        termination_grace_period_seconds: pod.termination_grace_period_seconds,
        share_process_namespace: pod.share_process_namespace,
        ram_role_name: None,
        eip: None,
        ephemeral_storage_gib: None,
        ntp_servers: Vec::new(),
        core_pattern: None,
        auto_match_image_cache: None,
        image_snapshot_id: None,
        extra_params: Vec::new(),
    })
}

vnode_plugin_sdk::translator_plugin!(
    /// The exported plugin.
    Translator {
        name: "__NAME__",
        description: "Minimal translator: containers, images, commands, sizes, emptyDir and file volumes",
        translate: translate,
    }
);

#[cfg(test)]
mod tests;
"#;

const TRANSLATOR_TESTS: &str = r#"use super::*;
use vnode_plugin_sdk::testing::{resolved_pod, translate_input};

#[test]
fn maps_containers_and_the_attempt() {
    let input = translate_input(resolved_pod("shop", "web"));
    let request = translate(&input).expect("translated");
    assert_eq!(request.name, "shop-web");
    assert_eq!(request.client_token, input.pod.meta.uid);
    assert_eq!(request.containers.len(), 1);
    assert_eq!(request.containers[0].image, input.pod.containers[0].image);
    assert_eq!(request.containers[0].cpu, Some(0.5));
}

#[test]
fn refuses_what_it_does_not_map() {
    let mut input = translate_input(resolved_pod("shop", "web"));
    input.pod.host_network = true;
    assert!(matches!(translate(&input), Err(TranslateError::Unsupported(_))));
    let mut input = translate_input(resolved_pod("shop", "web"));
    input.pod.volumes.push(Volume {
        name: "data".into(),
        source: VolumeSource::Other("csi".into()),
    });
    match translate(&input) {
        Err(TranslateError::Unsupported(e)) => assert_eq!(e.field, "spec.volumes[0]"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}
"#;

const SAMPLE_PODS: &str = r#"# Pods to try the plugin on: `vnode plugin simulate --plugin X.wasm --pods pods.yaml`.
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  namespace: shop
  uid: 0d6a1f0e-0000-4000-8000-000000000001
spec:
  containers:
    - name: web
      image: nginx:1.27
      resources:
        requests: {cpu: 500m, memory: 512Mi}
---
apiVersion: v1
kind: Pod
metadata:
  name: report-1
  namespace: batch
  uid: 0d6a1f0e-0000-4000-8000-000000000002
  labels:
    example.com/spot: "true"
spec:
  restartPolicy: Never
  containers:
    - name: report
      image: busybox:1.36
      command: ["sh", "-c", "echo done"]
      resources:
        requests: {cpu: "2", memory: 4Gi}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(rel: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(rel)
    }

    #[test]
    fn every_sdk_source_is_vendored() {
        for (dir, listed) in [
            ("plugins/vnode-plugin-sdk/src", SDK_SOURCES),
            (
                "plugins/vnode-plugin-sdk-translator/src",
                SDK_TRANSLATOR_SOURCES,
            ),
        ] {
            let mut on_disk: Vec<String> = std::fs::read_dir(repo(dir))
                .expect("SDK source directory")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            on_disk.sort();
            let mut vendored: Vec<String> = listed.iter().map(|(f, _)| (*f).to_string()).collect();
            vendored.sort();
            assert_eq!(
                on_disk, vendored,
                "{dir}: update SDK_SOURCES in plugin/new.rs"
            );
        }
    }

    #[test]
    fn wit_bindgen_matches_the_plugins_workspace() {
        let manifest = std::fs::read_to_string(repo("plugins/Cargo.toml")).expect("manifest");
        for (dep, name) in [
            (WIT_BINDGEN_DEP, "WIT_BINDGEN_DEP"),
            (SERDE_DEP, "SERDE_DEP"),
            (POSTCARD_DEP, "POSTCARD_DEP"),
        ] {
            assert!(
                manifest.lines().any(|l| l.trim() == dep),
                "plugins/Cargo.toml's line for {name} changed; update {name}"
            );
        }
    }

    #[test]
    fn vendored_wit_is_the_sdk_contract() {
        let sources = SDK_SOURCES.iter().chain(SDK_TRANSLATOR_SOURCES);
        let mut used = 0;
        for (_, text) in sources {
            for (i, _) in text.match_indices("\"../../wit/") {
                let rest = &text[i + "\"../../wit/".len()..];
                let version = &rest[..rest.find('"').expect("closing quote")];
                assert!(
                    WIT.iter()
                        .any(|(f, _)| f.starts_with(&format!("{version}/"))),
                    "the SDK generates from wit/{version}, which is not vendored"
                );
                used += 1;
            }
        }
        assert!(used >= 2, "both SDK crates name their WIT folder");
    }

    #[test]
    fn names_are_validated() {
        for good in ["gpu-first", "a", "team2-policy"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Gpu",
            "2fast",
            "a_b",
            "a--b",
            "a-",
            "vnode-plugin-sdk",
            "x/y",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_a_non_empty_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("keep.txt"), "mine").expect("write");
        let err = scaffold("p", KindArg::Placement, dir.path()).expect_err("not empty");
        assert!(err.to_string().contains("not empty"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("keep.txt")).expect("kept"),
            "mine"
        );
    }
}
