//! The runtime against real components built from `plugins/`: loading, typed errors, limits,
//! hostile plugins under concurrent good calls, the compiled cache.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use vnode_plugin_host::contract::{Decision, KeyValue};
use vnode_plugin_host::{PluginError, PluginKind, PluginLoader, builtin, samples};

#[test]
fn loads_zone_spread_and_decides_with_identity() {
    let loader = loader();
    let plugin = load_placement(&loader, builtin::ZONE_SPREAD, "");
    let id = plugin.identity();
    assert_eq!(id.kind, PluginKind::Placement);
    assert_eq!(id.name, "zone-spread");
    // Which version the shipped build speaks is `contract_versions.rs`'s business.
    assert!(
        vnode_plugin_host::contract::SUPPORTED_VERSIONS.contains(&id.contract_version.as_str()),
        "{}",
        id.contract_version
    );
    assert_eq!(
        id.sha256,
        vnode_plugin_host::sha256_hex(builtin::ZONE_SPREAD)
    );
    let (pod, ctx) = samples::placement_sample();
    let d = plugin.place_blocking(&pod, ctx.clone()).expect("decides");
    assert_eq!(d.plugin.sha256, id.sha256);
    let Decision::Accept(a) = &d.value else {
        panic!("expected accept: {:?}", d.value)
    };
    // Zone i has the fewest groups in the sample; j had a recent stock-out.
    assert_eq!(a.attempts[0].zone_id.as_deref(), Some("cn-hangzhou-i"));
    // Deterministic: the same input gives the same decision, on a fresh instance each time.
    for _ in 0..5 {
        assert_eq!(
            plugin
                .place_blocking(&pod, ctx.clone())
                .expect("decides")
                .value,
            d.value
        );
    }
}

#[test]
fn config_reaches_the_plugin_and_bad_config_is_refused() {
    let loader = loader();
    let plugin = load_placement(&loader, builtin::ZONE_SPREAD, "tag.team = platform");
    let (pod, ctx) = samples::placement_sample();
    let Decision::Accept(a) = plugin.place_blocking(&pod, ctx).expect("decides").value else {
        panic!()
    };
    assert_eq!(
        a.attempts[0].extra_tags,
        [KeyValue {
            key: "team".into(),
            value: "platform".into()
        }]
    );

    let err = loader
        .load_blocking(
            &source(builtin::ZONE_SPREAD),
            Some(PluginKind::Placement),
            "colour = blue",
        )
        .expect_err("bad config");
    assert!(
        matches!(&err, PluginError::InitRejected(m) if m.contains("colour")),
        "{err}"
    );
}

#[test]
fn translator_default_loads_and_translates_the_sample() {
    let loader = loader();
    let plugin = loader
        .load_blocking(&source(builtin::TRANSLATOR_DEFAULT), None, "")
        .expect("translator-default loads");
    assert_eq!(plugin.kind(), PluginKind::Translator);
    let d = plugin
        .translate_blocking(samples::translate_sample())
        .expect("call succeeds");
    let request = d.value.expect("the sample pod translates");
    assert_eq!(request.containers.len(), 2);
}

#[test]
fn wrong_world_non_wasm_and_core_modules_get_typed_errors() {
    let loader = loader();
    let err = loader
        .load_blocking(
            &source(builtin::TRANSLATOR_DEFAULT),
            Some(PluginKind::Placement),
            "",
        )
        .expect_err("a translator is not a placement plugin");
    assert!(
        matches!(
            err,
            PluginError::WrongWorld {
                expected: PluginKind::Placement,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("translator"), "{err}");

    let err = loader
        .load_blocking(&source(b"apiVersion: v1\nkind: Pod\n"), None, "")
        .expect_err("yaml");
    assert!(matches!(err, PluginError::NotWasm { .. }), "{err}");

    // The smallest valid core module.
    let err = loader
        .load_blocking(&source(b"\0asm\x01\0\0\0"), None, "")
        .expect_err("module");
    assert!(matches!(err, PluginError::NotAComponent), "{err}");

    // A truncated component.
    let half = &builtin::ZONE_SPREAD[..builtin::ZONE_SPREAD.len() / 2];
    let err = loader
        .load_blocking(&source(half), None, "")
        .expect_err("truncated");
    assert!(matches!(err, PluginError::InvalidComponent(_)), "{err}");
}

#[test]
fn hostile_plugins_fail_typed_and_quickly_while_good_calls_continue() {
    // The endless loop runs under the default 50 ms deadline. Everything else runs under a
    // 10 s one: the deadline is wall-clock, and on a loaded 2-core machine a descheduled call
    // (a good decision, the memory hog growing to its 64 MiB cap) can outlast 50 ms before
    // it finishes or reaches its own error.
    let loader = loader();
    let hostile = load_placement(&loader, &hostile_bytes(), "");
    let patient = patient_loader();
    let good = load_placement(&patient, builtin::ZONE_SPREAD, "");
    let hostile_patient = load_placement(&patient, &hostile_bytes(), "");

    // Good calls on other threads the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (good, stop, ok, failed) = (good.clone(), stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                let (pod, ctx) = samples::placement_sample();
                while !stop.load(Ordering::Relaxed) {
                    match good.place_blocking(&pod, ctx.clone()) {
                        Ok(d) if is_accept(&d.value) => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();

    let call_on = |plugin: &vnode_plugin_host::LoadedPlugin, behaviour: &str| {
        let (mut pod, ctx) = samples::placement_sample();
        pod.meta.annotations.push(KeyValue {
            key: "hostile.vnode.io/behaviour".into(),
            value: behaviour.into(),
        });
        let started = Instant::now();
        let result = plugin.place_blocking(&pod, ctx);
        (result, started.elapsed())
    };
    let call = |behaviour: &str| call_on(&hostile_patient, behaviour);
    let (r, t) = call_on(&hostile, "loop");
    let e = r.expect_err("loop").error;
    assert!(matches!(e, PluginError::Timeout { limit_ms: 50 }), "{e}");
    assert!(t < Duration::from_secs(1), "timeout took {t:?}");

    let (r, t) = call("hog");
    let e = r.expect_err("hog").error;
    assert!(matches!(e, PluginError::MemoryLimit { .. }), "{e}");
    assert!(t < Duration::from_secs(2), "memory limit took {t:?}");

    let (r, _) = call("trap");
    let e = r.expect_err("trap").error;
    assert!(
        matches!(&e, PluginError::Trap { message } if message.contains("panicked on purpose")),
        "{e}"
    );

    let (r, _) = call("huge");
    let e = r.expect_err("huge").error;
    // Building the 10 MiB answer takes tens of milliseconds; on a loaded CI machine (two
    // workers hammering the same 2 cores) it can outlast the 50 ms deadline first. Either
    // way the answer never reaches the host and the error is typed.
    assert!(
        matches!(
            e,
            PluginError::OutputTooLarge { .. } | PluginError::Timeout { .. }
        ),
        "{e}"
    );

    let (r, _) = call("empty-accept");
    let e = r.expect_err("empty accept").error;
    assert!(matches!(e, PluginError::InvalidOutput(_)), "{e}");

    // Logging is bounded, not fatal.
    let (r, _) = call("log-flood");
    assert!(is_accept(&r.expect("log flood still decides").value));

    // After all that, the hostile plugin itself still serves (fresh instance per call).
    let (r, _) = call("none");
    assert!(is_accept(&r.expect("behaves").value));

    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "a good call failed meanwhile"
    );
    assert!(
        ok.load(Ordering::Relaxed) > 10,
        "good calls kept being served"
    );
}

#[test]
fn hostile_smoke_and_init_are_refused_at_load() {
    let loader = loader();
    let bytes = hostile_bytes();
    let err = loader
        .load_blocking(
            &source(&bytes),
            Some(PluginKind::Placement),
            "always = trap",
        )
        .expect_err("smoke");
    assert!(
        matches!(&err, PluginError::SmokeFailed(inner) if matches!(**inner, PluginError::Trap { .. })),
        "{err}"
    );
    let err = loader
        .load_blocking(&source(&bytes), Some(PluginKind::Placement), "init = loop")
        .expect_err("init loop");
    assert!(matches!(err, PluginError::Timeout { .. }), "{err}");
    let err = loader
        .load_blocking(
            &source(&bytes),
            Some(PluginKind::Placement),
            "init = reject",
        )
        .expect_err("init");
    assert!(matches!(err, PluginError::InitRejected(_)), "{err}");
}

#[test]
fn compiled_cache_is_used_and_survives_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine();
    let loader = PluginLoader::new(engine.clone(), Some(dir.path().to_path_buf()));
    load_placement(&loader, builtin::ZONE_SPREAD, "");
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .expect("cache dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(entries.len(), 1, "one entry: {entries:?}");
    let name = entries[0]
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_string();
    assert!(
        name.starts_with(&vnode_plugin_host::sha256_hex(builtin::ZONE_SPREAD)),
        "{name}"
    );

    // A second loader (a "restart") deserializes from the cache.
    let again = PluginLoader::new(engine.clone(), Some(dir.path().to_path_buf()));
    load_placement(&again, builtin::ZONE_SPREAD, "");

    // A corrupted entry is ignored and rewritten, never trusted.
    std::fs::write(&entries[0], b"garbage").expect("corrupt");
    let plugin = load_placement(&again, builtin::ZONE_SPREAD, "");
    let (pod, ctx) = samples::placement_sample();
    assert!(is_accept(
        &plugin.place_blocking(&pod, ctx).expect("decides").value
    ));
    assert!(std::fs::read(&entries[0]).expect("rewritten").len() > 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_calls_through_a_slot() {
    let loader = loader();
    let plugin = loader
        .load(
            source(builtin::COST_AWARE),
            Some(PluginKind::Placement),
            String::new(),
        )
        .await
        .expect("loads");
    let slot = vnode_plugin_host::PluginSlot::new(plugin);
    let mut calls = Vec::new();
    let slot = Arc::new(slot);
    for _ in 0..32 {
        let slot = slot.clone();
        calls.push(tokio::spawn(async move {
            let (pod, ctx) = samples::placement_sample();
            slot.place(pod, ctx).await
        }));
    }
    for c in calls {
        let d = c.await.expect("task").expect("decides");
        assert_eq!(d.plugin.name, "cost-aware");
        assert!(is_accept(&d.value));
    }
}

/// Fast versions run their async calls inline on the runtime worker; a version that once ran
/// past the inline budget (here: into its deadline) moves its later calls off the worker, and
/// still answers with typed errors and good decisions.
#[test]
fn slow_version_moves_off_the_runtime_worker() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let loader = loader();
    let fast =
        vnode_plugin_host::PluginSlot::new(load_placement(&loader, builtin::ZONE_SPREAD, ""));
    // Loading runs a smoke decision under the 50 ms wall-clock deadline; on a machine running
    // many test binaries at once a descheduled load can time out, so allow a retry.
    let hostile_plugin = (0..3)
        .find_map(|_| {
            loader
                .load_blocking(&source(&hostile_bytes()), Some(PluginKind::Placement), "")
                .ok()
        })
        .expect("hostile fixture loads");
    let hostile = vnode_plugin_host::PluginSlot::new(hostile_plugin.clone());
    let call = |slot: &vnode_plugin_host::PluginSlot, behaviour: &str| {
        let (mut pod, ctx) = samples::placement_sample();
        pod.meta.annotations.push(KeyValue {
            key: "hostile.vnode.io/behaviour".into(),
            value: behaviour.into(),
        });
        runtime.block_on(slot.place(pod, ctx))
    };
    for _ in 0..3 {
        assert!(is_accept(&call(&fast, "none").expect("decides").value));
    }
    assert!(fast.current().runs_fast(), "zone-spread stays inline");
    assert!(
        hostile_plugin.runs_fast(),
        "not slow before its first long call"
    );
    let e = call(&hostile, "loop").expect_err("loop").error;
    assert!(matches!(e, PluginError::Timeout { .. }), "{e}");
    assert!(
        !hostile_plugin.runs_fast(),
        "a timed-out version leaves the worker"
    );
    // Still serving, now through block_in_place, with typed errors.
    assert!(is_accept(&call(&hostile, "none").expect("decides").value));
    let e = call(&hostile, "loop").expect_err("loop again").error;
    assert!(matches!(e, PluginError::Timeout { .. }), "{e}");
}

/// Two versions of the same plugin on one engine, each under its own limits: each call is
/// stopped by its own version's deadline or memory limit, and the error names that limit.
#[test]
fn each_version_runs_under_its_own_limits() {
    use vnode_plugin_host::PluginLimits;
    let loader = loader();
    let load = |call_timeout_ms: u64, memory_mib: u64| {
        loader
            .load_blocking_with_limits(
                &source(&hostile_bytes()),
                Some(PluginKind::Placement),
                "",
                PluginLimits {
                    call_timeout: Duration::from_millis(call_timeout_ms),
                    memory_limit_bytes: memory_mib << 20,
                },
            )
            .expect("hostile fixture loads")
    };
    // Deadlines far above a normal call, so a loaded machine does not fail the smoke test.
    let tight = load(300, 16);
    let loose = load(700, 40);
    assert_eq!(tight.limits().call_timeout, Duration::from_millis(300));
    assert_eq!(loose.limits().memory_limit_bytes, 40 << 20);
    let call = |plugin: &vnode_plugin_host::LoadedPlugin, behaviour: &str| {
        let (mut pod, ctx) = samples::placement_sample();
        pod.meta.annotations.push(KeyValue {
            key: "hostile.vnode.io/behaviour".into(),
            value: behaviour.into(),
        });
        plugin.place_blocking(&pod, ctx)
    };
    for (plugin, ms) in [(&tight, 300), (&loose, 700)] {
        let started = Instant::now();
        let e = call(plugin, "loop").expect_err("loop").error;
        assert!(
            matches!(e, PluginError::Timeout { limit_ms } if limit_ms == ms),
            "{e}"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(ms),
            "stopped early"
        );
    }
    for (plugin, mib) in [(&tight, 16u64), (&loose, 40)] {
        let e = call(plugin, "hog").expect_err("hog").error;
        assert!(
            matches!(e, PluginError::MemoryLimit { limit_bytes } if limit_bytes == mib << 20),
            "{e}"
        );
    }
    // The engine's default still applies to a version loaded without limits.
    let default = load_placement(&loader, &hostile_bytes(), "");
    assert_eq!(default.limits(), loader.engine().default_limits());
    let e = call(&default, "loop").expect_err("loop").error;
    assert!(matches!(e, PluginError::Timeout { limit_ms: 50 }), "{e}");
}
