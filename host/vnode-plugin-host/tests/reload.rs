//! Hot reload from files: concurrent calls across a swap, editor rename-over, `kubectl cp`
//! partial writes, the ConfigMap `..data` symlink swap, refused candidates, config changes.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use vnode_plugin_host::{
    PluginSlot, PluginWatcher, WatchOptions, WatchTarget, builtin, samples, sha256_hex,
};

const WAIT: Duration = Duration::from_secs(20);

fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-editor");
    std::fs::write(&tmp, bytes).expect("write temp");
    std::fs::rename(&tmp, path).expect("rename over");
}

fn start(slot: &Arc<PluginSlot>, file: &Path, config: Option<&Path>) -> PluginWatcher {
    start_with(loader(), slot, file, config)
}

fn start_with(
    loader: vnode_plugin_host::PluginLoader,
    slot: &Arc<PluginSlot>,
    file: &Path,
    config: Option<&Path>,
) -> PluginWatcher {
    let target = WatchTarget {
        slot: slot.clone(),
        plugin_file: file.to_path_buf(),
        config_file: config.map(Path::to_path_buf),
    };
    PluginWatcher::start(loader, target, WatchOptions::default()).expect("watcher starts")
}

fn serving(slot: &PluginSlot) -> String {
    slot.current().identity().sha256.clone()
}

#[test]
fn reload_under_concurrent_calls_drops_the_old_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("placement.wasm");
    let v1 = builtin::ZONE_SPREAD.to_vec();
    let v2 = variant(&v1, "v2");
    std::fs::write(&file, &v1).expect("write v1");
    // Every call must succeed, so the deadline must not be what a CPU-starved test machine trips.
    let first = load_placement(&patient_loader(), &v1, "");
    let weak_v1 = Arc::downgrade(&first);
    let slot = Arc::new(PluginSlot::new(first));
    let mut status = slot.subscribe();
    let _watcher = start_with(patient_loader(), &slot, &file, None);

    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (slot, stop, failed, seen) =
                (slot.clone(), stop.clone(), failed.clone(), seen.clone());
            std::thread::spawn(move || {
                let (pod, ctx) = samples::placement_sample();
                while !stop.load(Ordering::Relaxed) {
                    match slot.place_blocking(&pod, ctx.clone()) {
                        Ok(d) if is_accept(&d.value) => {
                            seen.lock().expect("lock").insert(d.plugin.sha256.clone());
                        }
                        other => {
                            failed.lock().expect("lock").push(format!("{other:?}"));
                        }
                    }
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(100));
    write_atomically(&file, &v2);
    assert!(
        wait_for(WAIT, || serving(&slot) == sha256_hex(&v2)),
        "v2 never served"
    );
    assert!(status.has_changed().expect("sender alive"));
    assert_eq!(status.borrow_and_update().generation, 1);
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    let failed = failed.lock().expect("lock").clone();
    assert!(
        failed.is_empty(),
        "no call may fail across a swap: {failed:?}"
    );
    let seen = seen.lock().expect("lock").clone();
    assert!(
        seen.contains(&sha256_hex(&v1)) && seen.contains(&sha256_hex(&v2)),
        "both versions served: {seen:?}"
    );
    assert!(
        wait_for(WAIT, || weak_v1.upgrade().is_none()),
        "the old version is freed once its calls finished"
    );
}

#[test]
fn identical_content_is_ignored_and_a_bad_candidate_is_refused_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("placement.wasm");
    let v1 = builtin::ZONE_SPREAD.to_vec();
    std::fs::write(&file, &v1).expect("write");
    let slot = Arc::new(PluginSlot::new(load_placement(&loader(), &v1, "")));
    let _watcher = start(&slot, &file, None);

    write_atomically(&file, &v1);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(slot.status().generation, 0, "same bytes: no reload");

    // Garbage (a wrong world here: the translator) is refused; v1 keeps serving.
    write_atomically(&file, builtin::TRANSLATOR_DEFAULT);
    assert!(
        wait_for(WAIT, || slot.status().last_refused.is_some()),
        "refusal recorded"
    );
    let refused = slot.status().last_refused.expect("refused");
    assert!(
        refused.reason.contains("wrong plugin world"),
        "{}",
        refused.reason
    );
    assert_eq!(
        refused.sha256.as_deref(),
        Some(sha256_hex(builtin::TRANSLATOR_DEFAULT).as_str())
    );
    assert_eq!(serving(&slot), sha256_hex(&v1));
    let (pod, ctx) = samples::placement_sample();
    assert!(is_accept(
        &slot.place_blocking(&pod, ctx).expect("still serving").value
    ));

    // A good candidate afterwards clears the refusal.
    let v2 = variant(&v1, "v2");
    write_atomically(&file, &v2);
    assert!(wait_for(WAIT, || serving(&slot) == sha256_hex(&v2)));
    assert!(slot.status().last_refused.is_none());
}

#[test]
fn partial_in_place_write_is_never_swapped_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("placement.wasm");
    let v1 = builtin::ZONE_SPREAD.to_vec();
    let v2 = variant(&v1, "v2");
    std::fs::write(&file, &v1).expect("write");
    let slot = Arc::new(PluginSlot::new(load_placement(&loader(), &v1, "")));
    let _watcher = start(&slot, &file, None);

    // `kubectl cp` style: the same inode, written in two bursts with a pause longer than the
    // debounce between them.
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&file)
        .expect("open");
    f.write_all(&v2[..v2.len() / 2]).expect("first half");
    f.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        serving(&slot),
        sha256_hex(&v1),
        "half a file is never served"
    );
    f.write_all(&v2[v2.len() / 2..]).expect("second half");
    drop(f);
    assert!(
        wait_for(WAIT, || serving(&slot) == sha256_hex(&v2)),
        "the complete file is served"
    );
    assert!(
        slot.status().last_refused.is_none(),
        "a partial write is not reported as a refusal"
    );
}

#[cfg(unix)]
#[test]
fn configmap_data_symlink_swap_reloads() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let v1 = builtin::ZONE_SPREAD.to_vec();
    let v2 = variant(&v1, "v2");
    // The layout kubelet creates for a ConfigMap volume.
    std::fs::create_dir(d.join("..2026_11_25_10_00_00.1")).expect("mkdir");
    std::fs::write(d.join("..2026_11_25_10_00_00.1/placement.wasm"), &v1).expect("v1");
    std::fs::write(d.join("..2026_11_25_10_00_00.1/placement.conf"), "").expect("conf");
    symlink("..2026_11_25_10_00_00.1", d.join("..data")).expect("..data");
    symlink("..data/placement.wasm", d.join("placement.wasm")).expect("key link");
    symlink("..data/placement.conf", d.join("placement.conf")).expect("key link");

    let slot = Arc::new(PluginSlot::new(load_placement(&loader(), &v1, "")));
    let _watcher = start(
        &slot,
        &d.join("placement.wasm"),
        Some(&d.join("placement.conf")),
    );

    // kubelet's update: new timestamped dir, temp symlink, rename over `..data`.
    std::fs::create_dir(d.join("..2026_11_25_10_05_00.2")).expect("mkdir");
    std::fs::write(d.join("..2026_11_25_10_05_00.2/placement.wasm"), &v2).expect("v2");
    std::fs::write(
        d.join("..2026_11_25_10_05_00.2/placement.conf"),
        "tag.rev = 2\n",
    )
    .expect("conf");
    symlink("..2026_11_25_10_05_00.2", d.join("..data_tmp")).expect("tmp link");
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).expect("swap");
    std::fs::remove_dir_all(d.join("..2026_11_25_10_00_00.1")).expect("cleanup");

    assert!(
        wait_for(WAIT, || serving(&slot) == sha256_hex(&v2)),
        "the swap is picked up"
    );
    assert_eq!(slot.current().config(), "tag.rev = 2\n");
}

#[test]
fn config_file_change_reloads_and_bad_config_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("placement.wasm");
    let conf = dir.path().join("placement.conf");
    std::fs::write(&file, builtin::ZONE_SPREAD).expect("write");
    std::fs::write(&conf, "").expect("conf");
    let slot = Arc::new(PluginSlot::new(load_placement(
        &loader(),
        builtin::ZONE_SPREAD,
        "",
    )));
    let _watcher = start(&slot, &file, Some(&conf));

    write_atomically(&conf, b"spot-strategy = SpotAsPriceGo\n");
    assert!(
        wait_for(WAIT, || slot.current().config().contains("SpotAsPriceGo")),
        "config reloaded"
    );
    assert_eq!(slot.status().generation, 1);

    write_atomically(&conf, b"spot-strategy = Free\n");
    assert!(wait_for(WAIT, || slot.status().last_refused.is_some()));
    let reason = slot.status().last_refused.expect("refused").reason;
    assert!(reason.contains("Free"), "{reason}");
    assert!(
        slot.current().config().contains("SpotAsPriceGo"),
        "old config keeps serving"
    );
}
