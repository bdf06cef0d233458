//! `cost-aware`: a placement policy that buys spot capacity for pods that declare they tolerate
//! interruption and on-demand capacity for everything else, with a per-namespace refusal list.
//! See README.md for the rules and the configuration.

pub use vnode_plugin_sdk::eci::{ANN_SPOT_PRICE_LIMIT, ANN_SPOT_STRATEGY};
use vnode_plugin_sdk::eci::{parse_price, parse_spot_duration, pod_spot_strategy, split_list};
use vnode_plugin_sdk::placement::{Decision, PlacementContext, PodView};
use vnode_plugin_sdk::prelude::*;
use vnode_plugin_sdk::util::{parse_bool, parse_key_values};

/// Label or annotation by which a pod declares it tolerates interruption: `"true"` asks for
/// spot, `"false"` forbids it. The annotation wins over the label.
pub const INTERRUPTIBLE: &str = "vnode.io/interruptible";
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

impl Config {
    /// Parses the `key = value` configuration.
    pub fn parse(text: &str) -> Result<Config, String> {
        let mut c = Config::default();
        let mut strategy: Option<String> = None;
        let mut limit = None;
        for (key, value) in parse_key_values(text)? {
            match key {
                "refuse-namespaces" => c.refuse_namespaces = split_list(value),
                "never-spot-namespaces" => c.never_spot_namespaces = split_list(value),
                "spot-strategy" => strategy = Some(value.to_string()),
                "spot-price-limit" => limit = Some(parse_price(value)?),
                "spot-duration-hours" => {
                    c.spot_duration_hours =
                        parse_spot_duration(value).map_err(|e| format!("{key}: {e}"))?;
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
    if let Some(explicit) = pod_spot_strategy(meta)? {
        return Ok(match explicit {
            SpotStrategy::OnDemand => Capacity::OnDemand("the pod asks for NoSpot"),
            _ if ns_forbids => Capacity::OnDemand("the namespace never runs on spot"),
            spot => Capacity::Spot(spot, "the pod asks for spot explicitly"),
        });
    }
    // 2. The pod's own declaration.
    match pod.flag(INTERRUPTIBLE)? {
        Some(true) => {}
        Some(false) => {
            return Ok(Capacity::OnDemand(
                "the pod declares it is not interruptible",
            ));
        }
        None => {
            let why = if pod.owned_by("StatefulSet") {
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
        return refuse(format!(
            "namespace {ns} may not run on this virtual node (cost-aware refuse-namespaces)"
        ));
    }
    let capacity = match capacity(pod, config) {
        Ok(c) => c,
        Err(e) => return refuse(e),
    };
    // All the node's vSwitches in one attempt, least-used zone first: ECI moves on to the next
    // vSwitch on a stock-out itself, which is cheaper than one host round trip per zone.
    let vswitch_ids: Vec<String> = ctx
        .zones_by_usage()
        .into_iter()
        .map(|z| z.vswitch_id.clone())
        .collect();
    let attempt = |spot: SpotStrategy, label: &str| {
        let mut tags = config.tags.clone();
        tags.push(KeyValue {
            key: "vnode.io/capacity".into(),
            value: label.into(),
        });
        Attempt {
            spot,
            spot_duration_hours: (spot != SpotStrategy::OnDemand)
                .then_some(config.spot_duration_hours),
            extra_tags: tags,
            ..attempt_anywhere(vswitch_ids.clone())
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
            (attempts, ["spot: ", why, fallback].concat())
        }
        Capacity::OnDemand(why) => (
            vec![attempt(SpotStrategy::OnDemand, "on-demand")],
            ["on-demand: ", why].concat(),
        ),
    };
    accept(attempts, reason)
}

vnode_plugin_sdk::placement_plugin!(
    /// The exported plugin.
    CostAware {
        name: "cost-aware",
        description: "Spot for pods that declare vnode.io/interruptible, on-demand otherwise; \
                      per-namespace refusal",
        config: Config::parse,
        place: decide,
    }
);

#[cfg(test)]
mod tests;
