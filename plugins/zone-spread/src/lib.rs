//! `zone-spread`: a placement policy that spreads pods over the node's zones by how many of the
//! node's container groups already run in each, and honours the Alibaba Cloud ECI pod
//! annotations users already know. See README.md for the annotations and the configuration.

use vnode_plugin_sdk::eci::{
    self, parse_price, parse_schedule_strategy, parse_spot_duration, pod_spot_duration,
    pod_spot_strategy, pod_vswitches, split_list,
};
pub use vnode_plugin_sdk::eci::{
    ANN_SCHEDULE_STRATEGY, ANN_SPOT_DURATION, ANN_SPOT_PRICE_LIMIT, ANN_SPOT_STRATEGY,
    ANN_USE_SPECS, ANN_VSWITCH,
};
use vnode_plugin_sdk::placement::{Accepted, Decision, PlacementContext, PodView};
use vnode_plugin_sdk::prelude::*;
use vnode_plugin_sdk::spec::{SpecLabel, parse_use_specs};
use vnode_plugin_sdk::util::{annotation, parse_key_values};

/// Never return more attempts than this (the host tries them one by one on stock-outs).
const MAX_ATTEMPTS: usize = 16;

/// The plugin's configuration (see README.md). Every field has a default, so the empty string
/// is a valid configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Spot strategy for pods without the `eci-spot-strategy` annotation.
    pub spot: SpotStrategy,
    /// Spot protection period for spot pods without `eci-spot-duration`.
    pub spot_duration_hours: Option<u32>,
    /// `VSwitchOrdered`/`VSwitchRandom` when an attempt has several vSwitches.
    pub schedule_strategy: Option<String>,
    /// `economy`/`general`, in order of preference.
    pub compute_categories: Vec<String>,
    /// A zone that ran out of stock less than this many seconds ago is tried last.
    pub stockout_avoid_seconds: u32,
    /// Tags added to every container group (`tag.<key> = <value>`).
    pub tags: Vec<KeyValue>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            spot: SpotStrategy::OnDemand,
            spot_duration_hours: None,
            schedule_strategy: None,
            compute_categories: Vec::new(),
            stockout_avoid_seconds: 300,
            tags: Vec::new(),
        }
    }
}

impl Config {
    /// Parses the `key = value` configuration; the empty string gives the defaults.
    pub fn parse(text: &str) -> Result<Config, String> {
        let mut config = Config::default();
        let mut price_limit = None;
        let mut strategy = None;
        for (key, value) in parse_key_values(text)? {
            match key {
                "spot-strategy" => strategy = Some(value.to_string()),
                "spot-price-limit" => price_limit = Some(parse_price(value)?),
                "spot-duration-hours" => {
                    config.spot_duration_hours = Some(parse_spot_duration(value)?);
                }
                "schedule-strategy" => {
                    config.schedule_strategy = Some(parse_schedule_strategy(value)?);
                }
                "compute-categories" => config.compute_categories = split_list(value),
                "stockout-avoid-seconds" => {
                    config.stockout_avoid_seconds = value.parse().map_err(|_| {
                        format!("stockout-avoid-seconds: {value:?} is not a whole number")
                    })?;
                }
                _ => match key.strip_prefix("tag.") {
                    Some(tag) if !tag.is_empty() => config.tags.push(KeyValue {
                        key: tag.to_string(),
                        value: value.to_string(),
                    }),
                    _ => return Err(format!("unknown configuration key {key:?}")),
                },
            }
        }
        if let Some(strategy) = strategy {
            config.spot = eci::spot_strategy(&strategy, price_limit)?;
        } else if price_limit.is_some() {
            return Err(
                "spot-price-limit is set but spot-strategy is not SpotWithPriceLimit".into(),
            );
        }
        Ok(config)
    }
}

/// The whole decision, as a pure function (unit-tested natively).
pub fn decide(pod: &PodView, ctx: &PlacementContext, config: &Config) -> Decision {
    match try_decide(pod, ctx, config) {
        Ok(accepted) => Decision::Accept(accepted),
        Err(reason) => Decision::Refuse(reason),
    }
}

fn try_decide(pod: &PodView, ctx: &PlacementContext, config: &Config) -> Result<Accepted, String> {
    let meta = &pod.meta;
    let spot = pod_spot_strategy(meta)?.unwrap_or(config.spot);
    let spot_duration_hours = match pod_spot_duration(meta)? {
        Some(hours) => Some(hours),
        None if spot != SpotStrategy::OnDemand => config.spot_duration_hours,
        None => None,
    };
    let schedule_strategy = match annotation(meta, ANN_SCHEDULE_STRATEGY) {
        Some(v) => Some(parse_schedule_strategy(v)?),
        None => config.schedule_strategy.clone(),
    };
    let sizings = match annotation(meta, ANN_USE_SPECS) {
        Some(v) => parse_use_specs(v)?,
        None => vec![Sizing::Auto],
    };

    let make = |zone_id: Option<String>, vswitch_ids: Vec<String>, sizing: &Sizing| Attempt {
        zone_id,
        vswitch_ids,
        schedule_strategy: schedule_strategy.clone(),
        sizing: sizing.clone(),
        spot,
        spot_duration_hours,
        compute_categories: config.compute_categories.clone(),
        extra_tags: config.tags.clone(),
    };

    // Pinned vSwitches: the pod chose; keep its order, ECI spreads per schedule strategy.
    if let Some(vswitches) = pod_vswitches(meta)? {
        let zone = single_zone_of(&vswitches, ctx);
        let attempts = sizings
            .iter()
            .map(|s| make(zone.clone(), vswitches.clone(), s))
            .collect();
        return Ok(Accepted {
            attempts,
            reason: format!("vSwitches pinned by {ANN_VSWITCH}: {}", vswitches.join(",")),
        });
    }

    if ctx.zones.is_empty() {
        let attempts = sizings.iter().map(|s| make(None, Vec::new(), s)).collect();
        return Ok(Accepted {
            attempts,
            reason: "no zones configured on the node; ECI chooses among the default vSwitches"
                .into(),
        });
    }

    let mut order = spread_order(ctx, config, &sizings);
    // `topologySpreadConstraints` on zones with `DoNotSchedule` (contract 0.2.0): only zones
    // that keep the skew within bounds. The least used zone always qualifies, so at least one
    // remains.
    let max_skew = pod.zone_max_skew();
    if let Some(skew) = max_skew {
        order.retain(|&i| ctx.within_skew(&ctx.zones[i].zone_id, skew));
        if order.is_empty() {
            return Err(format!(
                "no zone keeps the pod's topology spread within maxSkew {skew}"
            ));
        }
    }
    let mut attempts = Vec::new();
    'outer: for &index in &order {
        let zone = &ctx.zones[index];
        for sizing in &sizings {
            if attempts.len() == MAX_ATTEMPTS {
                break 'outer;
            }
            attempts.push(make(
                Some(zone.zone_id.clone()),
                vec![zone.vswitch_id.clone()],
                sizing,
            ));
        }
    }
    let first = &ctx.zones[order[0]];
    // "zone Z has the fewest of this node's container groups (N of TOTAL across K zones)",
    // written piece by piece: `format!` costs the Wasm decision several times as much.
    let mut numbers = itoa::Buffer::new();
    let mut reason = String::with_capacity(128);
    reason.push_str("zone ");
    reason.push_str(&first.zone_id);
    reason.push_str(" has the fewest of this node's container groups (");
    reason.push_str(numbers.format(ctx.usage(&first.zone_id)));
    reason.push_str(" of ");
    let total: u64 = ctx
        .usage
        .iter()
        .map(|u| u64::from(u.container_groups))
        .sum();
    reason.push_str(numbers.format(total));
    reason.push_str(" across ");
    reason.push_str(numbers.format(ctx.zones.len()));
    reason.push_str(" zones)");
    if let Some(skew) = max_skew {
        reason.push_str("; topology spread maxSkew ");
        reason.push_str(numbers.format(skew));
        reason.push_str(" allows ");
        reason.push_str(numbers.format(order.len()));
        reason.push_str(" of ");
        reason.push_str(numbers.format(ctx.zones.len()));
        reason.push_str(" zones");
    }
    Ok(Accepted { attempts, reason })
}

/// Zone indexes, best first: zones without a recent stock-out before those with one, then by
/// current container-group count, then in configuration order (a stable, replayable choice).
fn spread_order(ctx: &PlacementContext, config: &Config, sizings: &[Sizing]) -> Vec<usize> {
    // Each zone's key once, not in the sort's comparisons: a stock-out check compares spec
    // labels, and the sort would redo it for every comparison.
    let mut keyed: Vec<(bool, u32, usize)> = ctx
        .zones
        .iter()
        .enumerate()
        .map(|(i, zone)| {
            let recently_out = ctx.recent_stockouts.iter().any(|s| {
                s.zone_id == zone.zone_id
                    && s.seconds_ago < config.stockout_avoid_seconds
                    && stockout_matches(&s.spec, sizings)
            });
            (recently_out, ctx.usage(&zone.zone_id), i)
        })
        .collect();
    // The keys are distinct (the index is part of each), so an unstable sort gives the one order.
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, _, i)| i).collect()
}

/// Whether a stock-out of `spec` concerns one of the pod's sizings (auto sizing: any spec).
fn stockout_matches(spec: &str, sizings: &[Sizing]) -> bool {
    sizings.iter().any(|s| match s {
        Sizing::Auto => true,
        Sizing::Spec(is) => SpecLabel::of(is) == *spec,
        Sizing::InstanceTypes(types) => types.iter().any(|t| t == spec),
    })
}

/// The zone of the given vSwitches when they all belong to one configured zone.
fn single_zone_of(vswitches: &[String], ctx: &PlacementContext) -> Option<String> {
    let mut zone: Option<&str> = None;
    for vsw in vswitches {
        let z = ctx.zone_of_vswitch(vsw)?;
        match zone {
            Some(prev) if prev != z => return None,
            _ => zone = Some(z),
        }
    }
    zone.map(str::to_string)
}

vnode_plugin_sdk::placement_plugin!(
    /// The exported plugin.
    ZoneSpread {
        name: "zone-spread",
        description: "Spreads pods over the node's zones by current count; honours the ECI \
                      vswitch/spec/spot annotations",
        config: Config::parse,
        place: decide,
    }
);

#[cfg(test)]
mod tests;
