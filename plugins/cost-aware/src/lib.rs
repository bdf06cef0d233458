//! `cost-aware`: a placement policy that buys spot capacity for pods that declare they tolerate
//! interruption and on-demand capacity for everything else, with a per-namespace refusal list.
//! See README.md for the rules and the configuration.

use vnode_plugin_sdk::placement::{Accepted, Decision, PlacementContext, PodView};
use vnode_plugin_sdk::util::{annotation, label, parse_key_values};
use vnode_plugin_sdk::{
    Attempt, KeyValue, PlacementPlugin, Plugin, PluginInfo, Sizing, SpotStrategy,
};

/// Label or annotation by which a pod declares it tolerates interruption: `"true"` asks for
/// spot, `"false"` forbids it. The annotation wins over the label.
pub const INTERRUPTIBLE: &str = "vnode.io/interruptible";
/// The ECI annotation: an explicit spot strategy always wins (unless the namespace forbids spot).
pub const ANN_SPOT_STRATEGY: &str = "k8s.aliyun.com/eci-spot-strategy";
/// Price limit for an explicit `SpotWithPriceLimit`.
pub const ANN_SPOT_PRICE_LIMIT: &str = "k8s.aliyun.com/eci-spot-price-limit";

/// The policy's configuration; the empty string gives the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Pods in these namespaces are refused outright.
    pub refuse_namespaces: Vec<String>,
    /// Pods in these namespaces never run on spot, whatever they declare.
    pub never_spot_namespaces: Vec<String>,
    /// How spot is bought for eligible pods.
    pub spot: SpotStrategy,
    /// Spot protection period in hours (ECI gives notice and keeps the instance this long).
    pub spot_duration_hours: u32,
    /// After the spot attempts, try on-demand too (a stock-out then costs money, not uptime).
    pub on_demand_fallback: bool,
    /// Pods with at least this priority never run on spot.
    pub on_demand_min_priority: i32,
    /// Tags added to every container group; a `vnode.io/capacity` tag is always added.
    pub tags: Vec<KeyValue>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            refuse_namespaces: Vec::new(),
            never_spot_namespaces: vec!["kube-system".into()],
            spot: SpotStrategy::SpotAsPriceGo,
            spot_duration_hours: 1,
            on_demand_fallback: true,
            on_demand_min_priority: 1_000_000,
            tags: Vec::new(),
        }
    }
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!("{key}: {other:?} is not true or false")),
    }
}

fn parse_price(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(p) if p.is_finite() && p > 0.0 => Ok(p),
        _ => Err(format!(
            "spot price limit {value:?} is not a positive number"
        )),
    }
}

impl Config {
    /// Parses the `key = value` configuration.
    pub fn parse(text: &str) -> Result<Config, String> {
        let mut c = Config::default();
        let mut strategy: Option<String> = None;
        let mut limit = None;
        for (key, value) in parse_key_values(text)? {
            match key {
                "refuse-namespaces" => c.refuse_namespaces = list(value),
                "never-spot-namespaces" => c.never_spot_namespaces = list(value),
                "spot-strategy" => strategy = Some(value.to_string()),
                "spot-price-limit" => limit = Some(parse_price(value)?),
                "spot-duration-hours" => {
                    c.spot_duration_hours = match value {
                        "0" => 0,
                        "1" => 1,
                        other => {
                            return Err(format!("spot-duration-hours: {other:?} must be 0 or 1"));
                        }
                    }
                }
                "on-demand-fallback" => c.on_demand_fallback = parse_bool(key, value)?,
                "on-demand-min-priority" => {
                    c.on_demand_min_priority = value.parse().map_err(|_| {
                        format!("on-demand-min-priority: {value:?} is not an integer")
                    })?;
                }
                _ => match key.strip_prefix("tag.") {
                    Some(tag) if !tag.is_empty() => c.tags.push(KeyValue {
                        key: tag.to_string(),
                        value: value.to_string(),
                    }),
                    _ => return Err(format!("unknown configuration key {key:?}")),
                },
            }
        }
        c.spot = match (strategy.as_deref(), limit) {
            (None | Some("SpotAsPriceGo"), None) => SpotStrategy::SpotAsPriceGo,
            (Some("SpotWithPriceLimit"), Some(l)) => SpotStrategy::SpotWithPriceLimit(l),
            (Some("SpotWithPriceLimit"), None) => {
                return Err("SpotWithPriceLimit needs spot-price-limit".into());
            }
            (_, Some(_)) => {
                return Err("spot-price-limit needs spot-strategy = SpotWithPriceLimit".into());
            }
            (Some(other), None) => {
                return Err(format!(
                    "spot-strategy {other:?} must be SpotAsPriceGo or SpotWithPriceLimit"
                ));
            }
        };
        Ok(c)
    }
}

/// Why a pod gets spot or not, for the decision's reason.
#[derive(Debug, PartialEq)]
enum Capacity {
    Spot(SpotStrategy, &'static str),
    OnDemand(&'static str),
}

fn capacity(pod: &PodView, config: &Config) -> Result<Capacity, String> {
    let meta = &pod.meta;
    let ns_forbids = config
        .never_spot_namespaces
        .iter()
        .any(|n| n == &meta.namespace);
    // 1. An explicit ECI strategy is the most specific ask.
    if let Some(strategy) = annotation(meta, ANN_SPOT_STRATEGY) {
        let explicit = match strategy.trim() {
            "NoSpot" => None,
            "SpotAsPriceGo" => Some(SpotStrategy::SpotAsPriceGo),
            "SpotWithPriceLimit" => {
                let limit = annotation(meta, ANN_SPOT_PRICE_LIMIT).ok_or_else(|| {
                    format!("{ANN_SPOT_STRATEGY}=SpotWithPriceLimit needs {ANN_SPOT_PRICE_LIMIT}")
                })?;
                Some(SpotStrategy::SpotWithPriceLimit(parse_price(limit)?))
            }
            other => return Err(format!("{ANN_SPOT_STRATEGY}: unknown strategy {other:?}")),
        };
        return Ok(match explicit {
            None => Capacity::OnDemand("the pod asks for NoSpot"),
            Some(_) if ns_forbids => Capacity::OnDemand("the namespace never runs on spot"),
            Some(s) => Capacity::Spot(s, "the pod asks for spot explicitly"),
        });
    }
    // 2. The pod's own declaration.
    let declared = annotation(meta, INTERRUPTIBLE).or_else(|| label(meta, INTERRUPTIBLE));
    match declared.map(str::trim) {
        Some("true") => {}
        Some("false") => {
            return Ok(Capacity::OnDemand(
                "the pod declares it is not interruptible",
            ));
        }
        Some(other) => return Err(format!("{INTERRUPTIBLE}: {other:?} must be true or false")),
        None => {
            let why = if meta.owner_kind.as_deref() == Some("StatefulSet") {
                "StatefulSet pods run on-demand unless they declare vnode.io/interruptible"
            } else {
                "the pod does not declare vnode.io/interruptible"
            };
            return Ok(Capacity::OnDemand(why));
        }
    }
    if ns_forbids {
        return Ok(Capacity::OnDemand("the namespace never runs on spot"));
    }
    if pod
        .priority
        .is_some_and(|p| p >= config.on_demand_min_priority)
    {
        return Ok(Capacity::OnDemand(
            "the pod's priority is too high for spot",
        ));
    }
    Ok(Capacity::Spot(
        config.spot,
        "the pod declares vnode.io/interruptible",
    ))
}

/// The whole decision, as a pure function.
pub fn decide(pod: &PodView, ctx: &PlacementContext, config: &Config) -> Decision {
    let ns = &pod.meta.namespace;
    if config.refuse_namespaces.iter().any(|n| n == ns) {
        return Decision::Refuse(format!(
            "namespace {ns} may not run on this virtual node (cost-aware refuse-namespaces)"
        ));
    }
    let capacity = match capacity(pod, config) {
        Ok(c) => c,
        Err(e) => return Decision::Refuse(e),
    };
    // All the node's vSwitches in one attempt, least-used zone first: ECI moves on to the next
    // vSwitch on a stock-out itself, which is cheaper than one host round trip per zone.
    let mut zones: Vec<(u32, usize)> = ctx
        .zones
        .iter()
        .enumerate()
        .map(|(i, z)| {
            let used = ctx
                .usage
                .iter()
                .filter(|u| u.zone_id == z.zone_id)
                .map(|u| u.container_groups)
                .sum();
            (used, i)
        })
        .collect();
    zones.sort();
    let vswitch_ids: Vec<String> = zones
        .iter()
        .map(|&(_, i)| ctx.zones[i].vswitch_id.clone())
        .collect();
    let schedule_strategy = (vswitch_ids.len() > 1).then(|| "VSwitchOrdered".to_string());
    let attempt = |spot: SpotStrategy, label: &str| {
        let mut tags = config.tags.clone();
        tags.push(KeyValue {
            key: "vnode.io/capacity".into(),
            value: label.into(),
        });
        Attempt {
            zone_id: None,
            vswitch_ids: vswitch_ids.clone(),
            schedule_strategy: schedule_strategy.clone(),
            sizing: Sizing::Auto,
            spot,
            spot_duration_hours: (spot != SpotStrategy::OnDemand)
                .then_some(config.spot_duration_hours),
            compute_categories: Vec::new(),
            extra_tags: tags,
        }
    };
    let (attempts, reason) = match capacity {
        Capacity::Spot(strategy, why) => {
            let mut attempts = vec![attempt(strategy, "spot")];
            if config.on_demand_fallback {
                attempts.push(attempt(SpotStrategy::OnDemand, "on-demand"));
            }
            let fallback = if config.on_demand_fallback {
                ", on-demand if spot is out of stock"
            } else {
                ""
            };
            (attempts, format!("spot: {why}{fallback}"))
        }
        Capacity::OnDemand(why) => (
            vec![attempt(SpotStrategy::OnDemand, "on-demand")],
            format!("on-demand: {why}"),
        ),
    };
    Decision::Accept(Accepted { attempts, reason })
}

/// The exported plugin.
pub struct CostAware;

impl Plugin for CostAware {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "cost-aware".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Spot for pods that declare vnode.io/interruptible, on-demand otherwise; per-namespace refusal"
                .into(),
        }
    }

    fn init(config: String) -> Result<(), String> {
        Config::parse(&config).map(|_| ())
    }
}

impl PlacementPlugin for CostAware {
    fn place(pod: PodView, context: PlacementContext) -> Decision {
        match Config::parse(&context.config) {
            Ok(config) => decide(&pod, &context, &config),
            Err(e) => Decision::Refuse(format!("cost-aware: invalid configuration: {e}")),
        }
    }
}

vnode_plugin_sdk::export_placement_plugin!(CostAware);

#[cfg(test)]
mod tests;
