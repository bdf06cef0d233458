//! Convenience methods on the placement input: `pod.annotation("…")`, `pod.flag("…")`,
//! `context.zones_by_usage()` … (extension traits, as the records are generated).

use crate::ZoneVswitch;
use crate::placement::{PlacementContext, PodView};
use crate::quantity::{Resources, pod_requests};
use crate::toleration::{Taint, any_tolerates};
use crate::util::find;

/// The well-known zone label, the `topologyKey` of zone spread constraints.
pub const ZONE_TOPOLOGY_KEY: &str = "topology.kubernetes.io/zone";

/// Lookups on a [`PodView`].
pub trait PodExt {
    /// The smallest `maxSkew` of the pod's `DoNotSchedule` spread constraints over zones
    /// (`topology.kubernetes.io/zone`), if it has any (contract 0.2.0).
    fn zone_max_skew(&self) -> Option<u32>;
    /// `namespace/name`.
    fn full_name(&self) -> String;
    /// The value of annotation `key`, if set.
    fn annotation(&self, key: &str) -> Option<&str>;
    /// The value of label `key`, if set.
    fn label(&self, key: &str) -> Option<&str>;
    /// The annotation `key`, else the label `key`.
    fn annotation_or_label(&self, key: &str) -> Option<&str>;
    /// The value of `spec.nodeSelector[key]`, if set.
    fn node_selector(&self, key: &str) -> Option<&str>;
    /// A boolean declared as annotation or label `key` (annotation wins): `Ok(None)` when not
    /// set, an error naming the key for anything but `true`/`false`.
    fn flag(&self, key: &str) -> Result<Option<bool>, String>;
    /// Whether the controlling owner is of this kind (`StatefulSet`, `Job` …).
    fn owned_by(&self, kind: &str) -> bool;
    /// The pod's effective request ([`pod_requests`]).
    fn requests(&self) -> Resources;
    /// Whether the pod tolerates the taint ([`crate::toleration::tolerates`]).
    fn tolerates(&self, taint: Taint<'_>) -> bool;
}

impl PodExt for PodView {
    fn zone_max_skew(&self) -> Option<u32> {
        self.topology_spread
            .iter()
            .filter(|c| {
                c.topology_key == ZONE_TOPOLOGY_KEY && c.when_unsatisfiable == "DoNotSchedule"
            })
            .map(|c| c.max_skew.max(1) as u32)
            .min()
    }
    fn full_name(&self) -> String {
        format!("{}/{}", self.meta.namespace, self.meta.name)
    }
    fn annotation(&self, key: &str) -> Option<&str> {
        find(&self.meta.annotations, key)
    }
    fn label(&self, key: &str) -> Option<&str> {
        find(&self.meta.labels, key)
    }
    fn annotation_or_label(&self, key: &str) -> Option<&str> {
        self.annotation(key).or_else(|| self.label(key))
    }
    fn node_selector(&self, key: &str) -> Option<&str> {
        find(&self.node_selector, key)
    }
    fn flag(&self, key: &str) -> Result<Option<bool>, String> {
        match self.annotation_or_label(key).map(str::trim) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(format!("{key}: {other:?} must be true or false")),
        }
    }
    fn owned_by(&self, kind: &str) -> bool {
        self.meta.owner_kind.as_deref() == Some(kind)
    }
    fn requests(&self) -> Resources {
        pod_requests(self)
    }
    fn tolerates(&self, taint: Taint<'_>) -> bool {
        any_tolerates(&self.tolerations, taint)
    }
}

/// Lookups on a [`PlacementContext`].
pub trait ContextExt {
    /// This node's container groups in `zone` (0 when the host lists none).
    fn usage(&self, zone: &str) -> u32;
    /// The configured zones, least used first; ties keep configuration order, so the result
    /// is deterministic.
    fn zones_by_usage(&self) -> Vec<&ZoneVswitch>;
    /// Whether ECI reported no stock in `zone` less than `within_seconds` ago (for any spec
    /// when `spec` is `None`).
    fn recently_out_of_stock(&self, zone: &str, spec: Option<&str>, within_seconds: u32) -> bool;
    /// The configured zone a vSwitch belongs to.
    fn zone_of_vswitch(&self, vswitch: &str) -> Option<&str>;
    /// Whether one more container group in `zone` keeps the spread within `max_skew`, as
    /// Kubernetes counts it: (groups in the zone + 1) − (fewest groups in any zone) ≤ max skew.
    /// Counts are this node's container groups (what the host reports), not per selector.
    fn within_skew(&self, zone: &str, max_skew: u32) -> bool;
}

impl ContextExt for PlacementContext {
    fn usage(&self, zone: &str) -> u32 {
        self.usage
            .iter()
            .filter(|u| u.zone_id == zone)
            .map(|u| u.container_groups)
            .fold(0u32, u32::saturating_add)
    }
    fn zones_by_usage(&self) -> Vec<&ZoneVswitch> {
        let mut zones: Vec<(u32, usize, &ZoneVswitch)> = self
            .zones
            .iter()
            .enumerate()
            .map(|(i, z)| (self.usage(&z.zone_id), i, z))
            .collect();
        zones.sort_by_key(|&(used, i, _)| (used, i));
        zones.into_iter().map(|(_, _, z)| z).collect()
    }
    fn recently_out_of_stock(&self, zone: &str, spec: Option<&str>, within_seconds: u32) -> bool {
        self.recent_stockouts.iter().any(|s| {
            s.zone_id == zone
                && s.seconds_ago < within_seconds
                && spec.is_none_or(|spec| s.spec == spec)
        })
    }
    fn within_skew(&self, zone: &str, max_skew: u32) -> bool {
        let fewest = self
            .zones
            .iter()
            .map(|z| self.usage(&z.zone_id))
            .min()
            .unwrap_or(0);
        self.usage(zone).saturating_add(1).saturating_sub(fewest) <= max_skew
    }
    fn zone_of_vswitch(&self, vswitch: &str) -> Option<&str> {
        self.zones
            .iter()
            .find(|z| z.vswitch_id == vswitch)
            .map(|z| z.zone_id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::Stockout;
    use crate::testing::{annotate, context, label, pod, tolerate};

    #[test]
    fn pod_lookups() {
        let p = label(annotate(pod("shop", "web"), "a", "1"), "l", "2");
        assert_eq!(p.full_name(), "shop/web");
        assert_eq!(p.annotation("a"), Some("1"));
        assert_eq!(p.label("l"), Some("2"));
        assert_eq!(p.annotation_or_label("l"), Some("2"));
        assert_eq!(p.annotation("l"), None);
        let p = label(annotate(pod("d", "w"), "x/flag", "false"), "x/flag", "true");
        assert_eq!(p.flag("x/flag"), Ok(Some(false)), "annotation wins");
        assert_eq!(p.flag("missing"), Ok(None));
        let p = annotate(pod("d", "w"), "x/flag", "yes");
        assert!(p.flag("x/flag").expect_err("bad").contains("yes"));
        let mut p = pod("d", "w");
        p.meta.owner_kind = Some("Job".into());
        assert!(p.owned_by("Job") && !p.owned_by("StatefulSet"));
        let taint = Taint {
            key: "k",
            value: "v",
            effect: "NoSchedule",
        };
        assert!(!p.tolerates(taint));
        assert!(tolerate(p, "k", "v").tolerates(taint));
    }

    #[test]
    fn context_lookups() {
        let mut c = context(&[("z1", "v1", 3), ("z2", "v2", 1), ("z3", "v3", 1)], "");
        assert_eq!(c.usage("z1"), 3);
        assert_eq!(c.usage("nowhere"), 0);
        let order: Vec<&str> = c
            .zones_by_usage()
            .iter()
            .map(|z| z.zone_id.as_str())
            .collect();
        assert_eq!(order, ["z2", "z3", "z1"]);
        assert_eq!(c.zone_of_vswitch("v3"), Some("z3"));
        c.recent_stockouts.push(Stockout {
            zone_id: "z2".into(),
            spec: "2-4Gi".into(),
            seconds_ago: 30,
        });
        assert!(c.recently_out_of_stock("z2", None, 60));
        assert!(c.recently_out_of_stock("z2", Some("2-4Gi"), 60));
        assert!(!c.recently_out_of_stock("z2", Some("1-2Gi"), 60));
        assert!(!c.recently_out_of_stock("z2", None, 30));
        // Fewest is 1: z1 (3) would make a skew of 3.
        assert!(c.within_skew("z2", 1));
        assert!(!c.within_skew("z1", 2));
        assert!(c.within_skew("z1", 3));
    }

    #[test]
    fn zone_spread_constraints() {
        use crate::testing::spread_over_zones;
        let p = pod("d", "w");
        assert_eq!(p.zone_max_skew(), None);
        let p = spread_over_zones(p, 3, "ScheduleAnyway");
        assert_eq!(p.zone_max_skew(), None, "only DoNotSchedule constrains");
        let p = spread_over_zones(spread_over_zones(p, 2, "DoNotSchedule"), 1, "DoNotSchedule");
        assert_eq!(p.zone_max_skew(), Some(1));
    }
}
