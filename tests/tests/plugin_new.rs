//! `vnode plugin new`: a scaffolded crate builds with one command (offline, sharing the
//! repository's `target/plugins` so dependencies are not rebuilt), its own native tests pass,
//! and the component passes `vnode plugin check` and `vnode plugin simulate`.

use std::path::{Path, PathBuf};
use std::process::Command;

use vnode_tests::{repo_root, run_vnode};

/// The plugins' shared target directory (dependencies already built there by the normal build).
fn plugins_target() -> PathBuf {
    repo_root().join("target/plugins")
}

/// Runs cargo in `dir` the way a plugin author would, but offline and with the shared target
/// directory; panics with cargo's output on failure. Returns stdout + stderr.
fn cargo(dir: &Path, args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir)
        .args(args)
        .arg("--offline")
        .env("CARGO_TARGET_DIR", plugins_target());
    // The test runner's own cargo settings are for the host workspace.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_MAKEFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("running cargo");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "cargo {args:?} in {} failed:\n{text}",
        dir.display()
    );
    text
}

fn scaffold(name: &str, kind: &str, dir: &Path) -> String {
    let (code, stdout, stderr) = run_vnode(&[
        "plugin",
        "new",
        name,
        "--kind",
        kind,
        "--dir",
        dir.to_str().expect("utf8 path"),
    ])
    .expect("runs");
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("cargo build --release --target wasm32-wasip2"),
        "the next steps are printed:\n{stdout}"
    );
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        ".cargo/config.toml",
        "src/lib.rs",
        "src/tests.rs",
        "sdk/vnode-plugin-sdk/src/lib.rs",
    ] {
        assert!(dir.join(file).exists(), "{file} missing");
    }
    assert!(
        std::fs::read_dir(dir.join("wit")).expect("wit/").count() >= 1,
        "the contract is vendored"
    );
    stdout
}

#[test]
fn scaffolded_plugins_build_pass_check_and_simulate() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Unique crate names: the component lands in the shared target directory.
    let suffix = std::process::id();
    let name = format!("scaffold-place-{suffix}");
    let dir = tmp.path().join(&name);
    scaffold(&name, "placement", &dir);

    // The scaffold's own tests run the policy natively.
    let tested = cargo(&dir, &["test"]);
    assert!(tested.contains("test result: ok. 3 passed"), "{tested}");

    // One command builds the component.
    cargo(&dir, &["build", "--release", "--target", "wasm32-wasip2"]);
    let wasm = plugins_target()
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    let wasm = wasm.to_str().expect("utf8 path").to_string();

    let (code, stdout, stderr) = run_vnode(&["plugin", "check", &wasm]).expect("runs");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&name), "{stdout}");
    assert!(stdout.contains("vnode:plugin/placement-plugin"), "{stdout}");
    assert!(stdout.contains("contract:    vnode:plugin@"), "{stdout}");

    let pods = dir.join("pods.yaml");
    let (code, stdout, stderr) = run_vnode(&[
        "plugin",
        "simulate",
        "--plugin",
        &wasm,
        "--pods",
        pods.to_str().expect("utf8"),
        "--output",
        "json",
    ])
    .expect("runs");
    assert_eq!(code, 0, "{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let spot_of = |pod: &str| {
        rows.as_array()
            .expect("rows")
            .iter()
            .find(|r| r["pod"] == pod)
            .unwrap_or_else(|| panic!("{pod} missing in {rows}"))["decision"]["accept"]["attempts"]
            [0]["spot"]
            .clone()
    };
    assert_eq!(spot_of("shop/web-0"), "NoSpot");
    assert_eq!(spot_of("batch/report-1"), "SpotAsPriceGo");
    std::fs::remove_file(&wasm).ok();

    // A translator scaffold builds and checks too (dependencies are warm by now).
    let name = format!("scaffold-tr-{suffix}");
    let dir = tmp.path().join(&name);
    scaffold(&name, "translator", &dir);
    let tested = cargo(&dir, &["test"]);
    assert!(tested.contains("test result: ok. 2 passed"), "{tested}");
    cargo(&dir, &["build", "--release", "--target", "wasm32-wasip2"]);
    let wasm = plugins_target()
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    let (code, stdout, stderr) = run_vnode(&[
        "plugin",
        "check",
        "--kind",
        "translator",
        wasm.to_str().expect("utf8"),
    ])
    .expect("runs");
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("vnode:plugin/translator-plugin"),
        "{stdout}"
    );
    std::fs::remove_file(&wasm).ok();
}

#[test]
fn new_refuses_bad_names_and_occupied_directories() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (code, _, stderr) = run_vnode(&[
        "plugin",
        "new",
        "Bad_Name",
        "--dir",
        tmp.path().join("x").to_str().expect("utf8"),
    ])
    .expect("runs");
    assert_ne!(code, 0);
    assert!(stderr.contains("invalid plugin name"), "{stderr}");
    std::fs::write(tmp.path().join("mine.txt"), "keep").expect("write");
    let (code, _, stderr) = run_vnode(&[
        "plugin",
        "new",
        "ok-name",
        "--dir",
        tmp.path().to_str().expect("utf8"),
    ])
    .expect("runs");
    assert_ne!(code, 0);
    assert!(stderr.contains("not empty"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("mine.txt")).expect("kept"),
        "keep"
    );
}
