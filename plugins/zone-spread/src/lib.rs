//! `zone-spread`: a placement policy that spreads pods over the node's zones by how many of the
//! node's container groups already run in each, and honours the Alibaba Cloud ECI pod
//! annotations users already know. See README.md for the annotations and the configuration.

use vnode_plugin_sdk::placement::{Accepted, Decision, PlacementContext, PodView};
use vnode_plugin_sdk::util::{annotation, parse_key_values};
use vnode_plugin_sdk::{
    Attempt, InstanceSpec, KeyValue, PlacementPlugin, Plugin, PluginInfo, Sizing, SpotStrategy,
    ZoneVswitch,
};

/// Annotation: comma-separated vSwitch IDs the pod must use.
pub const ANN_VSWITCH: &str = "k8s.aliyun.com/eci-vswitch";
/// Annotation: comma-separated specs (`2-4Gi`) or ECS instance types (`ecs.c6.large`), in order.
pub const ANN_USE_SPECS: &str = "k8s.aliyun.com/eci-use-specs";
/// Annotation: `NoSpot`, `SpotAsPriceGo` or `SpotWithPriceLimit`.
pub const ANN_SPOT_STRATEGY: &str = "k8s.aliyun.com/eci-spot-strategy";
/// Annotation: maximum hourly price for `SpotWithPriceLimit`.
pub const ANN_SPOT_PRICE_LIMIT: &str = "k8s.aliyun.com/eci-spot-price-limit";
/// Annotation: `VSwitchOrdered` or `VSwitchRandom`.
pub const ANN_SCHEDULE_STRATEGY: &str = "k8s.aliyun.com/eci-schedule-strategy";
/// Annotation: spot protection period in hours (`0` or `1`).
pub const ANN_SPOT_DURATION: &str = "k8s.aliyun.com/eci-spot-duration";

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
                    config.spot_duration_hours = Some(parse_duration(value)?);
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
            config.spot = spot_strategy(&strategy, price_limit)?;
        } else if price_limit.is_some() {
            return Err(
                "spot-price-limit is set but spot-strategy is not SpotWithPriceLimit".into(),
            );
        }
        Ok(config)
    }
}

/// Maps ECI's spot strategy names (and friendlier kebab-case spellings) onto the contract.
pub fn spot_strategy(name: &str, price_limit: Option<f64>) -> Result<SpotStrategy, String> {
    match name {
        "NoSpot" | "on-demand" => Ok(SpotStrategy::OnDemand),
        "SpotAsPriceGo" | "spot-as-price-go" => Ok(SpotStrategy::SpotAsPriceGo),
        "SpotWithPriceLimit" | "spot-with-price-limit" => match price_limit {
            Some(limit) => Ok(SpotStrategy::SpotWithPriceLimit(limit)),
            None => Err("SpotWithPriceLimit needs a spot price limit".into()),
        },
        other => Err(format!(
            "unknown spot strategy {other:?} (NoSpot, SpotAsPriceGo or SpotWithPriceLimit)"
        )),
    }
}

fn parse_price(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(price) if price.is_finite() && price > 0.0 => Ok(price),
        _ => Err(format!(
            "spot price limit {value:?} is not a positive number"
        )),
    }
}

fn parse_duration(value: &str) -> Result<u32, String> {
    match value.trim() {
        "0" => Ok(0),
        "1" => Ok(1),
        other => Err(format!("spot duration {other:?} must be 0 or 1 (hours)")),
    }
}

fn parse_schedule_strategy(value: &str) -> Result<String, String> {
    match value.trim() {
        v @ ("VSwitchOrdered" | "VSwitchRandom") => Ok(v.to_string()),
        other => Err(format!(
            "schedule strategy {other:?} must be VSwitchOrdered or VSwitchRandom"
        )),
    }
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Parses one entry of `eci-use-specs`: `<vcpu>-<mem>Gi` becomes a spec, anything else an ECS
/// instance type.
pub enum UseSpec {
    /// A vCPU/memory combination.
    Spec(InstanceSpec),
    /// An ECS instance type such as `ecs.c6.large`.
    EcsType(String),
}

/// Parses `eci-use-specs` into sizings in the user's order: each vCPU/memory spec is its own
/// sizing; ECS types are grouped into one `instance-types` sizing at the position of the first.
pub fn parse_use_specs(value: &str) -> Result<Vec<Sizing>, String> {
    let mut sizings = Vec::new();
    let mut ecs_slot: Option<usize> = None;
    for entry in split_list(value) {
        match parse_one_spec(&entry)? {
            UseSpec::Spec(spec) => sizings.push(Sizing::Spec(spec)),
            UseSpec::EcsType(ty) => match ecs_slot {
                Some(slot) => {
                    if let Sizing::InstanceTypes(types) = &mut sizings[slot] {
                        types.push(ty);
                    }
                }
                None => {
                    ecs_slot = Some(sizings.len());
                    sizings.push(Sizing::InstanceTypes(vec![ty]));
                }
            },
        }
    }
    if sizings.is_empty() {
        return Err(format!("{ANN_USE_SPECS} is set but lists no spec"));
    }
    Ok(sizings)
}

fn parse_one_spec(entry: &str) -> Result<UseSpec, String> {
    if entry.starts_with("ecs.") {
        return Ok(UseSpec::EcsType(entry.to_string()));
    }
    let bad = || format!("{ANN_USE_SPECS}: {entry:?} is neither `<vcpu>-<mem>Gi` nor `ecs.<type>`");
    let (cpu, mem) = entry.split_once('-').ok_or_else(bad)?;
    let mem = mem
        .strip_suffix("Gi")
        .or_else(|| mem.strip_suffix("G"))
        .ok_or_else(bad)?;
    let cpu: f64 = cpu.parse().map_err(|_| bad())?;
    let mem: f64 = mem.parse().map_err(|_| bad())?;
    if !(cpu > 0.0 && mem > 0.0 && cpu <= 256.0 && mem <= 2048.0) {
        return Err(bad());
    }
    Ok(UseSpec::Spec(InstanceSpec {
        cpu_millis: (cpu * 1000.0).round() as u32,
        memory_mib: (mem * 1024.0).round() as u32,
    }))
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
    let spot = match annotation(meta, ANN_SPOT_STRATEGY) {
        Some(name) => {
            let limit = annotation(meta, ANN_SPOT_PRICE_LIMIT)
                .map(parse_price)
                .transpose()?;
            spot_strategy(name.trim(), limit)?
        }
        None => config.spot,
    };
    let spot_duration_hours = match annotation(meta, ANN_SPOT_DURATION) {
        Some(v) => Some(parse_duration(v)?),
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
    if let Some(pinned) = annotation(meta, ANN_VSWITCH) {
        let vswitches = split_list(pinned);
        if vswitches.is_empty() {
            return Err(format!("{ANN_VSWITCH} is set but lists no vSwitch"));
        }
        let zone = single_zone_of(&vswitches, &ctx.zones);
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

    let order = spread_order(ctx, config, &sizings);
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
    let reason = format!(
        "zone {} has the fewest of this node's container groups ({} of {} across {} zones)",
        first.zone_id,
        usage_of(ctx, &first.zone_id),
        ctx.usage.iter().map(|u| u.container_groups).sum::<u32>(),
        ctx.zones.len()
    );
    Ok(Accepted { attempts, reason })
}

/// Zone indexes, best first: zones without a recent stock-out before those with one, then by
/// current container-group count, then in configuration order (a stable, replayable choice).
fn spread_order(ctx: &PlacementContext, config: &Config, sizings: &[Sizing]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..ctx.zones.len()).collect();
    order.sort_by_key(|&i| {
        let zone = &ctx.zones[i].zone_id;
        let recently_out = ctx.recent_stockouts.iter().any(|s| {
            &s.zone_id == zone
                && s.seconds_ago < config.stockout_avoid_seconds
                && stockout_matches(&s.spec, sizings)
        });
        (recently_out, usage_of(ctx, zone), i)
    });
    order
}

/// Whether a stock-out of `spec` concerns one of the pod's sizings (auto sizing: any spec).
fn stockout_matches(spec: &str, sizings: &[Sizing]) -> bool {
    sizings.iter().any(|s| match s {
        Sizing::Auto => true,
        Sizing::Spec(is) => spec == spec_label(is),
        Sizing::InstanceTypes(types) => types.iter().any(|t| t == spec),
    })
}

fn spec_label(spec: &InstanceSpec) -> String {
    format!(
        "{}-{}Gi",
        trim_float(spec.cpu_millis as f64 / 1000.0),
        trim_float(spec.memory_mib as f64 / 1024.0)
    )
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn usage_of(ctx: &PlacementContext, zone: &str) -> u32 {
    ctx.usage
        .iter()
        .filter(|u| u.zone_id == zone)
        .map(|u| u.container_groups)
        .sum()
}

/// The zone of the given vSwitches when they all belong to one configured zone.
fn single_zone_of(vswitches: &[String], zones: &[ZoneVswitch]) -> Option<String> {
    let mut zone: Option<&str> = None;
    for vsw in vswitches {
        let z = zones
            .iter()
            .find(|z| &z.vswitch_id == vsw)?
            .zone_id
            .as_str();
        match zone {
            Some(prev) if prev != z => return None,
            _ => zone = Some(z),
        }
    }
    zone.map(str::to_string)
}

/// The exported plugin.
pub struct ZoneSpread;

impl Plugin for ZoneSpread {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "zone-spread".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Spreads pods over the node's zones by current count; honours the ECI \
                          vswitch/spec/spot annotations"
                .into(),
        }
    }

    fn init(config: String) -> Result<(), String> {
        Config::parse(&config).map(|_| ())
    }
}

impl PlacementPlugin for ZoneSpread {
    fn place(pod: PodView, context: PlacementContext) -> Decision {
        match Config::parse(&context.config) {
            Ok(config) => decide(&pod, &context, &config),
            // `init` accepted this string, so this cannot happen unless the host changed it.
            Err(e) => Decision::Refuse(format!("zone-spread: invalid configuration: {e}")),
        }
    }
}

vnode_plugin_sdk::export_placement_plugin!(ZoneSpread);

#[cfg(test)]
mod tests;
