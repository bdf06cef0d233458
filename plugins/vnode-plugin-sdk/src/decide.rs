//! Building answers: `accept`, `refuse`, `defer`, and attempts with sensible defaults.

use crate::placement::{Accepted, Decision, Deferral};
use crate::{Attempt, Sizing, SpotStrategy, ZoneVswitch};

/// Accept with `attempts` (best first; the host refuses an empty list) and a reason for people.
pub fn accept(attempts: Vec<Attempt>, reason: impl Into<String>) -> Decision {
    Decision::Accept(Accepted {
        attempts,
        reason: reason.into(),
    })
}

/// The pod must not run on this node; the reason becomes its event and status message.
pub fn refuse(reason: impl Into<String>) -> Decision {
    Decision::Refuse(reason.into())
}

/// Ask again in `retry_after_ms` (the host caps it at 10 minutes).
pub fn defer(retry_after_ms: u32, reason: impl Into<String>) -> Decision {
    Decision::Defer(Deferral {
        retry_after_ms,
        reason: reason.into(),
    })
}

/// One on-demand, auto-sized attempt in `zone` on its vSwitch; change fields as needed.
pub fn attempt_in(zone: &ZoneVswitch) -> Attempt {
    Attempt {
        zone_id: Some(zone.zone_id.clone()),
        vswitch_ids: vec![zone.vswitch_id.clone()],
        ..attempt_anywhere(Vec::new())
    }
}

/// One on-demand, auto-sized attempt on these vSwitches (empty: the node's defaults), letting
/// ECI pick the zone (`VSwitchOrdered` when there are several).
pub fn attempt_anywhere(vswitch_ids: Vec<String>) -> Attempt {
    let schedule_strategy = (vswitch_ids.len() > 1).then(|| "VSwitchOrdered".to_string());
    Attempt {
        zone_id: None,
        vswitch_ids,
        schedule_strategy,
        sizing: Sizing::Auto,
        spot: SpotStrategy::OnDemand,
        spot_duration_hours: None,
        compute_categories: Vec::new(),
        extra_tags: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders() {
        let z = ZoneVswitch {
            zone_id: "z".into(),
            vswitch_id: "v".into(),
        };
        let a = attempt_in(&z);
        assert_eq!(a.zone_id.as_deref(), Some("z"));
        assert_eq!(a.vswitch_ids, ["v"]);
        assert_eq!(a.schedule_strategy, None);
        assert_eq!(a.spot, SpotStrategy::OnDemand);
        let any = attempt_anywhere(vec!["a".into(), "b".into()]);
        assert_eq!(any.schedule_strategy.as_deref(), Some("VSwitchOrdered"));
        match accept(vec![a], "ok") {
            Decision::Accept(acc) => assert_eq!(acc.reason, "ok"),
            other => panic!("{other:?}"),
        }
        assert_eq!(refuse("no"), Decision::Refuse("no".into()));
        assert!(matches!(
            defer(5, "later"),
            Decision::Defer(Deferral {
                retry_after_ms: 5,
                ..
            })
        ));
    }
}
