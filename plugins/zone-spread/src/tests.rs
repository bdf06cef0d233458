use super::*;
use vnode_plugin_sdk::Plugin;
use vnode_plugin_sdk::placement::Accepted;
use vnode_plugin_sdk::placement::Stockout;
use vnode_plugin_sdk::testing::{annotate, context, pod};

const ZONES: &[(&str, &str, u32)] = &[
    ("cn-hangzhou-h", "vsw-h", 3),
    ("cn-hangzhou-i", "vsw-i", 1),
    ("cn-hangzhou-j", "vsw-j", 1),
];

fn accepted(d: Decision) -> Accepted {
    match d {
        Decision::Accept(a) => a,
        other => panic!("expected accept, got {other:?}"),
    }
}

fn refused(d: Decision) -> String {
    match d {
        Decision::Refuse(r) => r,
        other => panic!("expected refuse, got {other:?}"),
    }
}

fn zones_of(a: &Accepted) -> Vec<&str> {
    a.attempts
        .iter()
        .map(|t| t.zone_id.as_deref().unwrap_or("-"))
        .collect()
}

#[test]
fn least_loaded_zone_first_ties_in_config_order() {
    let a = accepted(decide(
        &pod("default", "web"),
        &context(ZONES, ""),
        &Config::default(),
    ));
    assert_eq!(
        zones_of(&a),
        ["cn-hangzhou-i", "cn-hangzhou-j", "cn-hangzhou-h"]
    );
    assert_eq!(a.attempts[0].vswitch_ids, ["vsw-i"]);
    assert_eq!(a.attempts[0].spot, SpotStrategy::OnDemand);
    assert_eq!(a.attempts[0].sizing, Sizing::Auto);
    assert!(a.reason.contains("cn-hangzhou-i"), "{}", a.reason);
}

#[test]
fn the_reason_names_the_zone_and_the_counts() {
    let a = accepted(decide(
        &pod("default", "web"),
        &context(&[("z1", "v1", 12), ("z2", "v2", 3), ("z3", "v3", 0)], ""),
        &Config::default(),
    ));
    assert_eq!(
        a.reason,
        "zone z3 has the fewest of this node's container groups (0 of 15 across 3 zones)"
    );
}

#[test]
fn a_stockout_of_one_of_the_pods_specs_moves_its_zone_last() {
    let p = annotate(
        pod("default", "web"),
        ANN_USE_SPECS,
        "0.25-0.5Gi,ecs.c6.large",
    );
    let mut ctx = context(ZONES, "");
    ctx.recent_stockouts.push(Stockout {
        zone_id: "cn-hangzhou-i".into(),
        spec: "0.5-1Gi".into(),
        seconds_ago: 10,
    });
    let zones = |ctx: &PlacementContext| {
        let a = accepted(decide(&p, ctx, &Config::default()));
        let mut zones: Vec<String> = zones_of(&a).into_iter().map(str::to_string).collect();
        zones.dedup();
        zones
    };
    // Another spec ran out: the least used zone (i) stays first.
    assert_eq!(zones(&ctx)[0], "cn-hangzhou-i");
    ctx.recent_stockouts[0].spec = "0.25-0.5Gi".into();
    assert_eq!(
        zones(&ctx),
        ["cn-hangzhou-j", "cn-hangzhou-h", "cn-hangzhou-i"]
    );
    ctx.recent_stockouts[0].spec = "ecs.c6.large".into();
    assert_eq!(
        zones(&ctx),
        ["cn-hangzhou-j", "cn-hangzhou-h", "cn-hangzhou-i"]
    );
}

#[test]
fn recent_stockout_moves_zone_last_until_it_expires() {
    let mut ctx = context(ZONES, "");
    ctx.recent_stockouts.push(Stockout {
        zone_id: "cn-hangzhou-i".into(),
        spec: "2-4Gi".into(),
        seconds_ago: 10,
    });
    let a = accepted(decide(&pod("default", "web"), &ctx, &Config::default()));
    assert_eq!(
        zones_of(&a),
        ["cn-hangzhou-j", "cn-hangzhou-h", "cn-hangzhou-i"]
    );
    ctx.recent_stockouts[0].seconds_ago = 301;
    let a = accepted(decide(&pod("default", "web"), &ctx, &Config::default()));
    assert_eq!(zones_of(&a)[0], "cn-hangzhou-i");
}

#[test]
fn pinned_vswitch_annotation_wins() {
    let p = annotate(pod("default", "web"), ANN_VSWITCH, "vsw-h, vsw-j");
    let a = accepted(decide(&p, &context(ZONES, ""), &Config::default()));
    assert_eq!(a.attempts.len(), 1);
    assert_eq!(a.attempts[0].vswitch_ids, ["vsw-h", "vsw-j"]);
    assert_eq!(a.attempts[0].zone_id, None, "two zones: ECI chooses");
    let p = annotate(pod("default", "web"), ANN_VSWITCH, "vsw-h");
    let a = accepted(decide(&p, &context(ZONES, ""), &Config::default()));
    assert_eq!(a.attempts[0].zone_id.as_deref(), Some("cn-hangzhou-h"));
}

#[test]
fn use_specs_become_sizings_in_order() {
    let p = annotate(
        pod("default", "web"),
        ANN_USE_SPECS,
        "2-4Gi,ecs.c6.large,0.5-1Gi,ecs.g6.large",
    );
    let a = accepted(decide(&p, &context(&ZONES[..1], ""), &Config::default()));
    let sizings: Vec<_> = a.attempts.iter().map(|t| t.sizing.clone()).collect();
    assert_eq!(
        sizings,
        [
            Sizing::Spec(InstanceSpec {
                cpu_millis: 2000,
                memory_mib: 4096
            }),
            Sizing::InstanceTypes(vec!["ecs.c6.large".into(), "ecs.g6.large".into()]),
            Sizing::Spec(InstanceSpec {
                cpu_millis: 500,
                memory_mib: 1024
            }),
        ]
    );
    let p = annotate(pod("default", "web"), ANN_USE_SPECS, "lots");
    assert!(refused(decide(&p, &context(ZONES, ""), &Config::default())).contains("lots"));
}

#[test]
fn spot_annotations_override_config() {
    let p = annotate(
        annotate(
            pod("default", "web"),
            ANN_SPOT_STRATEGY,
            "SpotWithPriceLimit",
        ),
        ANN_SPOT_PRICE_LIMIT,
        "0.25",
    );
    let p = annotate(p, ANN_SPOT_DURATION, "0");
    let a = accepted(decide(&p, &context(ZONES, ""), &Config::default()));
    assert_eq!(a.attempts[0].spot, SpotStrategy::SpotWithPriceLimit(0.25));
    assert_eq!(a.attempts[0].spot_duration_hours, Some(0));

    let p = annotate(
        pod("default", "web"),
        ANN_SPOT_STRATEGY,
        "SpotWithPriceLimit",
    );
    let reason = refused(decide(&p, &context(ZONES, ""), &Config::default()));
    assert!(reason.contains("price limit"), "{reason}");

    let p = annotate(pod("default", "web"), ANN_SPOT_STRATEGY, "NoSpot");
    let config =
        Config::parse("spot-strategy = SpotAsPriceGo\nspot-duration-hours = 1").expect("valid");
    let a = accepted(decide(&p, &context(ZONES, ""), &config));
    assert_eq!(a.attempts[0].spot, SpotStrategy::OnDemand);
    assert_eq!(a.attempts[0].spot_duration_hours, None);
}

#[test]
fn config_sets_defaults() {
    let config = Config::parse(
        "# defaults for the team\nspot-strategy = SpotAsPriceGo\nspot-duration-hours = 1\n\
         schedule-strategy = VSwitchRandom\ncompute-categories = economy, general\ntag.team = infra",
    )
    .expect("valid");
    let p = annotate(
        pod("default", "web"),
        ANN_SCHEDULE_STRATEGY,
        "VSwitchOrdered",
    );
    let a = accepted(decide(&p, &context(ZONES, ""), &config));
    let t = &a.attempts[0];
    assert_eq!(t.spot, SpotStrategy::SpotAsPriceGo);
    assert_eq!(t.spot_duration_hours, Some(1));
    assert_eq!(t.schedule_strategy.as_deref(), Some("VSwitchOrdered"));
    assert_eq!(t.compute_categories, ["economy", "general"]);
    assert_eq!(
        t.extra_tags,
        [KeyValue {
            key: "team".into(),
            value: "infra".into()
        }]
    );
}

#[test]
fn bad_config_is_refused_with_the_reason() {
    assert!(Config::parse("").is_ok());
    assert!(
        Config::parse("zones = a")
            .expect_err("unknown key")
            .contains("zones")
    );
    assert!(
        Config::parse("spot-strategy = Cheap")
            .expect_err("bad")
            .contains("Cheap")
    );
    assert!(
        Config::parse("spot-price-limit = 0.1").is_err(),
        "limit without strategy"
    );
    assert!(ZoneSpread::init("spot-duration-hours = 7".into()).is_err());
}

#[test]
fn no_zones_configured_lets_eci_choose() {
    let a = accepted(decide(
        &pod("default", "web"),
        &context(&[], ""),
        &Config::default(),
    ));
    assert_eq!(a.attempts.len(), 1);
    assert_eq!(a.attempts[0].zone_id, None);
    assert!(a.attempts[0].vswitch_ids.is_empty());
}

#[test]
fn zone_topology_spread_constraints_limit_the_zones() {
    use vnode_plugin_sdk::testing::spread_over_zones;
    // Usage h=3, i=1, j=1: with maxSkew 1 only i and j qualify (h would make 4-1 = 3).
    let p = spread_over_zones(pod("default", "web"), 1, "DoNotSchedule");
    let a = accepted(decide(&p, &context(ZONES, ""), &Config::default()));
    assert_eq!(zones_of(&a), ["cn-hangzhou-i", "cn-hangzhou-j"]);
    assert_eq!(
        a.reason,
        "zone cn-hangzhou-i has the fewest of this node's container groups (1 of 5 across 3 \
         zones); topology spread maxSkew 1 allows 2 of 3 zones"
    );
    // maxSkew 3 allows h too; ScheduleAnyway never removes a zone.
    let p = spread_over_zones(pod("default", "web"), 3, "DoNotSchedule");
    assert_eq!(
        accepted(decide(&p, &context(ZONES, ""), &Config::default()))
            .attempts
            .len(),
        3
    );
    let p = spread_over_zones(pod("default", "web"), 1, "ScheduleAnyway");
    assert_eq!(
        accepted(decide(&p, &context(ZONES, ""), &Config::default()))
            .attempts
            .len(),
        3
    );
}
