//! The Alibaba Cloud ECI pod annotations users already know, and the parsers every placement
//! policy that honours them needs (one copy, so `zone-spread` and `cost-aware` agree on what
//! `SpotWithPriceLimit` without a limit means).

use crate::util::annotation;
use crate::{PodMeta, SpotStrategy};

/// Comma-separated vSwitch IDs the pod must use.
pub const ANN_VSWITCH: &str = "k8s.aliyun.com/eci-vswitch";
/// Comma-separated specs (`2-4Gi`) or ECS instance types (`ecs.c6.large`), in order.
pub const ANN_USE_SPECS: &str = "k8s.aliyun.com/eci-use-specs";
/// `NoSpot`, `SpotAsPriceGo` or `SpotWithPriceLimit`.
pub const ANN_SPOT_STRATEGY: &str = "k8s.aliyun.com/eci-spot-strategy";
/// Maximum hourly price for `SpotWithPriceLimit`.
pub const ANN_SPOT_PRICE_LIMIT: &str = "k8s.aliyun.com/eci-spot-price-limit";
/// `VSwitchOrdered` or `VSwitchRandom`.
pub const ANN_SCHEDULE_STRATEGY: &str = "k8s.aliyun.com/eci-schedule-strategy";
/// Spot protection period in hours (`0` or `1`).
pub const ANN_SPOT_DURATION: &str = "k8s.aliyun.com/eci-spot-duration";

/// Splits a comma-separated list, trimming entries and dropping empty ones.
pub fn split_list(value: &str) -> Vec<String> {
    list_entries(value).map(str::to_string).collect()
}

/// The entries of a comma-separated list, trimmed, empty ones dropped, borrowed from `value`.
pub fn list_entries(value: &str) -> ListEntries<'_> {
    ListEntries { rest: Some(value) }
}

/// Iterator of [`list_entries`]. A plain byte scan: `str::split(',')`'s generic searcher is
/// several times the code, and a decision after a pause pays for every cache line it runs.
#[derive(Debug, Clone)]
pub struct ListEntries<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for ListEntries<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            let rest = self.rest?;
            // `,` is ASCII, so the byte search finds exactly the separators `split(',')` does.
            let (entry, after) = match rest.bytes().position(|b| b == b',') {
                Some(at) => (&rest[..at], Some(&rest[at + 1..])),
                None => (rest, None),
            };
            self.rest = after;
            let entry = entry.trim();
            if !entry.is_empty() {
                return Some(entry);
            }
        }
    }
}

/// A spot price limit: a positive, finite number.
pub fn parse_price(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(price) if price.is_finite() && price > 0.0 => Ok(price),
        _ => Err(format!(
            "spot price limit {value:?} is not a positive number"
        )),
    }
}

/// A spot protection period: ECI offers `0` or `1` hour.
pub fn parse_spot_duration(value: &str) -> Result<u32, String> {
    match value.trim() {
        "0" => Ok(0),
        "1" => Ok(1),
        other => Err(format!("spot duration {other:?} must be 0 or 1 (hours)")),
    }
}

/// `VSwitchOrdered` or `VSwitchRandom`.
pub fn parse_schedule_strategy(value: &str) -> Result<String, String> {
    match value.trim() {
        v @ ("VSwitchOrdered" | "VSwitchRandom") => Ok(v.to_string()),
        other => Err(format!(
            "schedule strategy {other:?} must be VSwitchOrdered or VSwitchRandom"
        )),
    }
}

/// Maps ECI's spot strategy names (and kebab-case spellings: `on-demand`, `spot-as-price-go`,
/// `spot-with-price-limit`) onto the contract; `SpotWithPriceLimit` needs `price_limit`.
pub fn spot_strategy(name: &str, price_limit: Option<f64>) -> Result<SpotStrategy, String> {
    match name.trim() {
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

/// The spot strategy the pod asks for with `eci-spot-strategy` (+ `eci-spot-price-limit`), or
/// `None` when it does not say. A malformed pair is an error naming the annotation.
pub fn pod_spot_strategy(meta: &PodMeta) -> Result<Option<SpotStrategy>, String> {
    let Some(name) = annotation(meta, ANN_SPOT_STRATEGY) else {
        return Ok(None);
    };
    let limit = annotation(meta, ANN_SPOT_PRICE_LIMIT)
        .map(parse_price)
        .transpose()
        .map_err(|e| format!("{ANN_SPOT_PRICE_LIMIT}: {e}"))?;
    spot_strategy(name, limit)
        .map(Some)
        .map_err(|e| format!("{ANN_SPOT_STRATEGY}: {e} ({ANN_SPOT_PRICE_LIMIT})"))
}

/// The spot protection period the pod asks for with `eci-spot-duration`, if any.
pub fn pod_spot_duration(meta: &PodMeta) -> Result<Option<u32>, String> {
    annotation(meta, ANN_SPOT_DURATION)
        .map(parse_spot_duration)
        .transpose()
        .map_err(|e| format!("{ANN_SPOT_DURATION}: {e}"))
}

/// The vSwitches the pod pins with `eci-vswitch`, if any (an empty list is an error).
pub fn pod_vswitches(meta: &PodMeta) -> Result<Option<Vec<String>>, String> {
    match annotation(meta, ANN_VSWITCH) {
        None => Ok(None),
        Some(v) => {
            let list = split_list(v);
            if list.is_empty() {
                return Err(format!("{ANN_VSWITCH} is set but lists no vSwitch"));
            }
            Ok(Some(list))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{annotate, pod};

    #[test]
    fn spot_strategy_from_annotations() {
        let p = pod("default", "web");
        assert_eq!(pod_spot_strategy(&p.meta), Ok(None));
        let p = annotate(pod("default", "web"), ANN_SPOT_STRATEGY, "SpotAsPriceGo");
        assert_eq!(
            pod_spot_strategy(&p.meta),
            Ok(Some(SpotStrategy::SpotAsPriceGo))
        );
        let p = annotate(p, ANN_SPOT_STRATEGY, "x");
        // First value wins (Kubernetes keys are unique; the builder just appends).
        assert_eq!(
            pod_spot_strategy(&p.meta),
            Ok(Some(SpotStrategy::SpotAsPriceGo))
        );
        let p = annotate(pod("d", "w"), ANN_SPOT_STRATEGY, "SpotWithPriceLimit");
        let err = pod_spot_strategy(&p.meta).expect_err("no limit");
        assert!(
            err.contains("price limit") && err.contains(ANN_SPOT_STRATEGY),
            "{err}"
        );
        let p = annotate(p, ANN_SPOT_PRICE_LIMIT, "0.25");
        assert_eq!(
            pod_spot_strategy(&p.meta),
            Ok(Some(SpotStrategy::SpotWithPriceLimit(0.25)))
        );
        let p = annotate(pod("d", "w"), ANN_SPOT_STRATEGY, "Cheap");
        assert!(
            pod_spot_strategy(&p.meta)
                .expect_err("bad")
                .contains("Cheap")
        );
        let p = annotate(
            annotate(pod("d", "w"), ANN_SPOT_STRATEGY, "SpotWithPriceLimit"),
            ANN_SPOT_PRICE_LIMIT,
            "-1",
        );
        assert!(
            pod_spot_strategy(&p.meta)
                .expect_err("negative")
                .contains("-1")
        );
    }

    #[test]
    fn small_parsers() {
        assert_eq!(split_list(" a, ,b ,"), ["a", "b"]);
        for list in [
            "",
            ",",
            " , ,",
            "a",
            "a,b",
            ",a,,b,",
            " a , b ",
            "\u{3000}é\u{3000},\tb\n",
            "ä,ö, ü ,",
        ] {
            let by_split: Vec<&str> = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            assert_eq!(list_entries(list).collect::<Vec<_>>(), by_split, "{list:?}");
        }
        assert_eq!(parse_spot_duration("1"), Ok(1));
        assert!(parse_spot_duration("7").is_err());
        assert!(parse_schedule_strategy("VSwitchRandom").is_ok());
        assert!(parse_schedule_strategy("Random").is_err());
        assert!(parse_price("inf").is_err());
        let p = annotate(pod("d", "w"), ANN_VSWITCH, " , ");
        assert!(pod_vswitches(&p.meta).is_err());
        let p = annotate(pod("d", "w"), ANN_VSWITCH, "vsw-a,vsw-b");
        assert_eq!(
            pod_vswitches(&p.meta),
            Ok(Some(vec!["vsw-a".into(), "vsw-b".into()]))
        );
        let p = annotate(pod("d", "w"), ANN_SPOT_DURATION, "2");
        assert!(
            pod_spot_duration(&p.meta)
                .expect_err("bad")
                .contains(ANN_SPOT_DURATION)
        );
    }
}
