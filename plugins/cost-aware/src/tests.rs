use super::*;
use vnode_plugin_sdk::Plugin;
use vnode_plugin_sdk::placement::Accepted;
use vnode_plugin_sdk::testing::{annotate, context, label as with_label, pod};

const ZONES: &[(&str, &str, u32)] = &[("cn-hangzhou-h", "vsw-h", 5), ("cn-hangzhou-i", "vsw-i", 2)];

fn accepted(d: Decision) -> Accepted {
    match d {
        Decision::Accept(a) => a,
        other => panic!("expected accept, got {other:?}"),
    }
}

fn spots(a: &Accepted) -> Vec<SpotStrategy> {
    a.attempts.iter().map(|t| t.spot).collect()
}

#[test]
fn undeclared_pods_run_on_demand() {
    let a = accepted(decide(
        &pod("shop", "web"),
        &context(ZONES, ""),
        &Config::default(),
    ));
    assert_eq!(spots(&a), [SpotStrategy::OnDemand]);
    assert_eq!(
        a.attempts[0].vswitch_ids,
        ["vsw-i", "vsw-h"],
        "least used first"
    );
    assert_eq!(a.attempts[0].spot_duration_hours, None);
    assert!(a.reason.contains("does not declare"), "{}", a.reason);
}

#[test]
fn interruptible_pods_get_spot_with_on_demand_fallback() {
    let p = with_label(pod("batch", "job-1"), INTERRUPTIBLE, "true");
    let a = accepted(decide(&p, &context(ZONES, ""), &Config::default()));
    assert_eq!(
        spots(&a),
        [SpotStrategy::SpotAsPriceGo, SpotStrategy::OnDemand]
    );
    assert_eq!(a.attempts[0].spot_duration_hours, Some(1));
    let tag = a.attempts[0]
        .extra_tags
        .iter()
        .find(|t| t.key == "vnode.io/capacity")
        .expect("tag");
    assert_eq!(tag.value, "spot");
    let c = Config::parse(
        "on-demand-fallback = false\nspot-strategy = SpotWithPriceLimit\nspot-price-limit = 0.05",
    )
    .expect("valid");
    let a = accepted(decide(&p, &context(ZONES, ""), &c));
    assert_eq!(spots(&a), [SpotStrategy::SpotWithPriceLimit(0.05)]);
}

#[test]
fn annotation_overrides_label() {
    let p = annotate(
        with_label(pod("batch", "job-1"), INTERRUPTIBLE, "true"),
        INTERRUPTIBLE,
        "false",
    );
    let a = accepted(decide(&p, &context(ZONES, ""), &Config::default()));
    assert_eq!(spots(&a), [SpotStrategy::OnDemand]);
}

#[test]
fn statefulset_pods_need_an_explicit_declaration() {
    let mut p = pod("db", "pg-0");
    p.meta.owner_kind = Some("StatefulSet".into());
    let a = accepted(decide(&p, &context(ZONES, ""), &Config::default()));
    assert_eq!(spots(&a), [SpotStrategy::OnDemand]);
    assert!(a.reason.contains("StatefulSet"), "{}", a.reason);
    let p = annotate(p, INTERRUPTIBLE, "true");
    let a = accepted(decide(&p, &context(ZONES, ""), &Config::default()));
    assert_eq!(spots(&a)[0], SpotStrategy::SpotAsPriceGo);
}

#[test]
fn namespaces_can_be_refused_or_kept_off_spot() {
    let c = Config::parse("refuse-namespaces = payments, legacy\nnever-spot-namespaces = critical")
        .expect("valid");
    match decide(&pod("payments", "api"), &context(ZONES, ""), &c) {
        Decision::Refuse(r) => assert!(r.contains("payments"), "{r}"),
        other => panic!("expected refuse, got {other:?}"),
    }
    let p = annotate(pod("critical", "x"), INTERRUPTIBLE, "true");
    let a = accepted(decide(&p, &context(ZONES, ""), &c));
    assert_eq!(spots(&a), [SpotStrategy::OnDemand]);
    let p = annotate(pod("critical", "x"), ANN_SPOT_STRATEGY, "SpotAsPriceGo");
    assert_eq!(
        spots(&accepted(decide(&p, &context(ZONES, ""), &c))),
        [SpotStrategy::OnDemand]
    );
}

#[test]
fn high_priority_pods_stay_on_demand() {
    let mut p = annotate(pod("ops", "x"), INTERRUPTIBLE, "true");
    p.priority = Some(2_000_000_000);
    assert_eq!(
        spots(&accepted(decide(
            &p,
            &context(ZONES, ""),
            &Config::default()
        ))),
        [SpotStrategy::OnDemand]
    );
}

#[test]
fn explicit_eci_annotation_wins() {
    let p = annotate(
        annotate(pod("batch", "x"), ANN_SPOT_STRATEGY, "SpotWithPriceLimit"),
        ANN_SPOT_PRICE_LIMIT,
        "0.1",
    );
    assert_eq!(
        spots(&accepted(decide(
            &p,
            &context(ZONES, ""),
            &Config::default()
        )))[0],
        SpotStrategy::SpotWithPriceLimit(0.1)
    );
    let p = annotate(pod("batch", "x"), ANN_SPOT_STRATEGY, "SpotWithPriceLimit");
    assert!(matches!(
        decide(&p, &context(ZONES, ""), &Config::default()),
        Decision::Refuse(_)
    ));
}

#[test]
fn config_errors_are_clear() {
    assert!(Config::parse("").is_ok());
    assert!(
        Config::parse("spot-price-limit = 1")
            .expect_err("no strategy")
            .contains("SpotWithPriceLimit")
    );
    assert!(
        Config::parse("on-demand-fallback = yes")
            .expect_err("bad bool")
            .contains("yes")
    );
    assert!(
        CostAware::init("colour = blue".into())
            .expect_err("unknown")
            .contains("colour")
    );
}
