//! `vnode plugin simulate --against OTHER.wasm`: where two placement policies decide
//! differently, pod by pod, and what each would cost. Prices come from the ECI emulator's
//! price table (`vnode_eci_emulator::spec`), the same numbers `DescribeContainerGroupPrice`
//! answers with, so an estimate here matches what `vnode dev` reports.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use vnode_eci_emulator::spec::{INSTANCE_TYPE_PRICED_AS, hourly_price, round_up};
use vnode_plugin_host::contract::{Attempt, Decision, PodView, Sizing, SpotStrategy};

use super::Placed;

/// The comparison as one JSON document (also what the table is printed from).
pub(super) fn compare(a: &[Placed], b: &[Placed]) -> Value {
    let mut differences = Vec::new();
    for (pa, pb) in a.iter().zip(b) {
        let differs = differing_fields(&pa.decision, &pb.decision);
        if !differs.is_empty() {
            differences.push(json!({
                "pod": pa.pod,
                "differs": differs,
                "a": outcome_json(&pa.decision),
                "b": outcome_json(&pb.decision),
            }));
        }
    }
    json!({
        "pods": a.len(),
        "same": a.len() - differences.len(),
        "different": differences.len(),
        "a": side_json(a),
        "b": side_json(b),
        "differences": differences,
    })
}

fn side_json(placed: &[Placed]) -> Value {
    let summary = summarize(placed);
    json!({
        "plugin": placed.first().map(|p| p.plugin.clone()).unwrap_or_default(),
        "accepted": summary.accepted,
        "refused": summary.refused,
        "deferred": summary.deferred,
        "errors": summary.errors,
        "spot": summary.spot,
        "spot_share": if summary.accepted == 0 { 0.0 } else { summary.spot as f64 / summary.accepted as f64 },
        "zones": summary.zones,
        "hourly_price_usd": summary.hourly_price,
        "unpriced": summary.unpriced,
    })
}

/// Totals for one policy over all pods.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Summary {
    pub accepted: usize,
    pub refused: usize,
    pub deferred: usize,
    pub errors: usize,
    /// Accepted pods whose first attempt is spot.
    pub spot: usize,
    /// Accepted pods per zone of their first attempt (`(ECI picks)` when it names none).
    pub zones: BTreeMap<String, usize>,
    /// Sum of the first attempts' hourly prices, USD.
    pub hourly_price: f64,
    /// Accepted pods whose size fits no ECI spec (left out of the price).
    pub unpriced: usize,
}

pub(super) fn summarize(placed: &[Placed]) -> Summary {
    let mut s = Summary::default();
    for p in placed {
        match &p.decision {
            Err(_) => s.errors += 1,
            Ok(Decision::Refuse(_)) => s.refused += 1,
            Ok(Decision::Defer(_)) => s.deferred += 1,
            Ok(Decision::Accept(a)) => {
                s.accepted += 1;
                let Some(first) = a.attempts.first() else {
                    continue;
                };
                if first.spot != SpotStrategy::OnDemand {
                    s.spot += 1;
                }
                let zone = first
                    .zone_id
                    .clone()
                    .unwrap_or_else(|| "(ECI picks)".into());
                *s.zones.entry(zone).or_default() += 1;
                match attempt_price(first, p.view.as_ref()) {
                    Some(price) => s.hourly_price += price,
                    None => s.unpriced += 1,
                }
            }
        }
    }
    s
}

/// Hourly price of running the pod as `attempt` says: an explicit spec as given, an ECS
/// instance type as the emulator prices it, auto sizing as the pod's effective request rounded
/// up to an ECI spec. `None` when nothing fits.
pub(super) fn attempt_price(attempt: &Attempt, pod: Option<&PodView>) -> Option<f64> {
    let spot = attempt.spot != SpotStrategy::OnDemand;
    let (cpu, memory) = match &attempt.sizing {
        Sizing::Spec(spec) => round_up(
            f64::from(spec.cpu_millis) / 1000.0,
            f64::from(spec.memory_mib) / 1024.0,
        )?,
        Sizing::InstanceTypes(_) => INSTANCE_TYPE_PRICED_AS,
        Sizing::Auto => {
            let (millis, bytes) = pod.map(effective_request).unwrap_or((0, 0));
            round_up(millis as f64 / 1000.0, bytes as f64 / f64::from(1u32 << 30))?
        }
    };
    Some(hourly_price(cpu, memory, spot))
}

/// The pod's effective CPU (millicores) and memory (bytes) request, as the scheduler computes
/// it: app containers summed (a request defaults to its limit), or the largest init container.
fn effective_request(pod: &PodView) -> (u64, u64) {
    let one = |c: &vnode_plugin_host::contract::ContainerView| {
        let r = &c.resources;
        (
            r.requests.cpu_millis.or(r.limits.cpu_millis).unwrap_or(0),
            r.requests
                .memory_bytes
                .or(r.limits.memory_bytes)
                .unwrap_or(0),
        )
    };
    let apps = pod.containers.iter().map(one).fold((0u64, 0u64), |acc, c| {
        (acc.0.saturating_add(c.0), acc.1.saturating_add(c.1))
    });
    pod.init_containers
        .iter()
        .map(one)
        .fold(apps, |acc, c| (acc.0.max(c.0), acc.1.max(c.1)))
}

/// What differs between two outcomes for the same pod: the daemon's shadow rollout rule
/// (`vnode_daemon::plugins::shadow::decision_differences`, reasons ignored), so a
/// simulation predicts the daemon's `agree`/`disagree` counts; two errors are the same
/// outcome, an error and a decision are not.
fn differing_fields(
    a: &Result<Decision, String>,
    b: &Result<Decision, String>,
) -> Vec<&'static str> {
    match (a, b) {
        (Ok(a), Ok(b)) => vnode_daemon::plugins::shadow::decision_differences(a, b),
        (Err(_), Err(_)) => Vec::new(),
        _ => vec!["decision"],
    }
}

fn outcome_json(d: &Result<Decision, String>) -> Value {
    match d {
        Err(e) => json!({"error": e}),
        Ok(d) => super::decision_json(d),
    }
}

/// `accept cn-hangzhou-h auto NoSpot (+2)`, `refuse: reason`, `error: …`.
fn outcome_text(d: &Value) -> String {
    if let Some(e) = d.get("error").and_then(Value::as_str) {
        return format!("error: {e}");
    }
    if let Some(r) = d.get("refuse").and_then(Value::as_str) {
        return format!("refuse: {r}");
    }
    if let Some(df) = d.get("defer") {
        return format!("defer {} ms", df["retry_after_ms"]);
    }
    let Some(a) = d.get("accept") else {
        return d.to_string();
    };
    let first = &a["attempts"][0];
    let spot = match &first["spot"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let n = a["attempts"].as_array().map_or(0, Vec::len);
    let more = if n > 1 {
        format!(" (+{})", n - 1)
    } else {
        String::new()
    };
    format!(
        "accept {} {} {spot}{more}",
        first["zone"].as_str().unwrap_or("(ECI picks)"),
        first["sizing"].as_str().unwrap_or("?"),
    )
}

pub(super) fn print_comparison(c: &Value) {
    let a_name = c["a"]["plugin"].as_str().unwrap_or("A");
    let b_name = c["b"]["plugin"].as_str().unwrap_or("B");
    println!("A = {a_name}");
    println!("B = {b_name}");
    println!();
    let diffs = c["differences"].as_array().cloned().unwrap_or_default();
    if diffs.is_empty() {
        println!("Both decide the same for all {} pods.", c["pods"]);
    } else {
        for d in &diffs {
            let differs: Vec<&str> = d["differs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            println!(
                "{}  differs in: {}",
                d["pod"].as_str().unwrap_or("?"),
                differs.join(", ")
            );
            println!("    A: {}", outcome_text(&d["a"]));
            println!("    B: {}", outcome_text(&d["b"]));
        }
        println!();
        println!(
            "{} of {} pods decided differently.",
            c["different"], c["pods"]
        );
    }
    println!();
    println!("{:<22} {:<34} B", "SUMMARY", "A");
    let row = |label: &str, f: &dyn Fn(&Value) -> String| {
        println!("{label:<22} {:<34} {}", f(&c["a"]), f(&c["b"]));
    };
    for key in ["accepted", "refused", "deferred", "errors"] {
        row(key, &|s| s[key].to_string());
    }
    row("spot share", &|s| {
        format!(
            "{:.0}% ({} of {})",
            s["spot_share"].as_f64().unwrap_or(0.0) * 100.0,
            s["spot"],
            s["accepted"]
        )
    });
    row("zones (first attempt)", &|s| {
        s["zones"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(z, n)| format!("{z}={n}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    });
    row("est. USD/hour", &|s| {
        let unpriced = s["unpriced"].as_u64().unwrap_or(0);
        let note = if unpriced > 0 {
            format!(" ({unpriced} unpriced)")
        } else {
            String::new()
        };
        format!("{:.4}{note}", s["hourly_price_usd"].as_f64().unwrap_or(0.0))
    });
    println!();
    println!("Prices: the ECI emulator's list prices for the first attempt of each accepted pod.");
}

#[cfg(test)]
mod tests {
    use super::*;
    use vnode_plugin_host::contract::{Accepted, InstanceSpec};

    fn attempt(zone: &str, sizing: Sizing, spot: SpotStrategy) -> Attempt {
        Attempt {
            zone_id: Some(zone.into()),
            vswitch_ids: vec![format!("vsw-{zone}")],
            schedule_strategy: None,
            sizing,
            spot,
            spot_duration_hours: None,
            compute_categories: Vec::new(),
            extra_tags: Vec::new(),
        }
    }

    fn placed(pod: &str, decision: Result<Decision, String>) -> Placed {
        Placed {
            pod: pod.into(),
            view: None,
            decision,
            plugin: "p 1".into(),
            row: Value::Null,
        }
    }

    fn accept(attempts: Vec<Attempt>) -> Result<Decision, String> {
        Ok(Decision::Accept(Accepted {
            attempts,
            reason: "r".into(),
        }))
    }

    const TWO_FOUR: Sizing = Sizing::Spec(InstanceSpec {
        cpu_millis: 2000,
        memory_mib: 4096,
    });

    #[test]
    fn differences_name_the_fields() {
        let a = accept(vec![attempt("h", Sizing::Auto, SpotStrategy::OnDemand)]);
        let b = accept(vec![attempt(
            "h",
            Sizing::Auto,
            SpotStrategy::SpotAsPriceGo,
        )]);
        assert_eq!(differing_fields(&a, &b), ["spot"]);
        assert!(differing_fields(&a, &a.clone()).is_empty());
        let c = accept(vec![
            attempt("i", Sizing::Auto, SpotStrategy::OnDemand),
            attempt("h", Sizing::Auto, SpotStrategy::OnDemand),
        ]);
        assert_eq!(differing_fields(&a, &c), ["zone", "vswitches", "fallbacks"]);
        assert_eq!(
            differing_fields(&a, &Ok(Decision::Refuse("no".into()))),
            ["decision"]
        );
        assert!(
            differing_fields(
                &Ok(Decision::Refuse("x".into())),
                &Ok(Decision::Refuse("y".into()))
            )
            .is_empty(),
            "reasons do not count"
        );
    }

    #[test]
    fn prices_come_from_the_emulator_table() {
        let on_demand =
            attempt_price(&attempt("h", TWO_FOUR, SpotStrategy::OnDemand), None).expect("priced");
        assert!((on_demand - hourly_price(2.0, 4.0, false)).abs() < 1e-12);
        let spot = attempt_price(&attempt("h", TWO_FOUR, SpotStrategy::SpotAsPriceGo), None)
            .expect("priced");
        assert!(spot < on_demand);
        // Auto sizing: the pod's request rounded up (no pod: the smallest spec).
        let auto = attempt_price(&attempt("h", Sizing::Auto, SpotStrategy::OnDemand), None)
            .expect("priced");
        assert!((auto - hourly_price(0.25, 0.5, false)).abs() < 1e-12);
    }

    #[test]
    fn summary_counts_outcomes_zones_and_spot() {
        let placed = vec![
            placed(
                "a",
                accept(vec![attempt("h", TWO_FOUR, SpotStrategy::OnDemand)]),
            ),
            placed(
                "b",
                accept(vec![attempt("i", TWO_FOUR, SpotStrategy::SpotAsPriceGo)]),
            ),
            placed("c", Ok(Decision::Refuse("no".into()))),
            placed("d", Err("trap".into())),
        ];
        let s = summarize(&placed);
        assert_eq!(
            (s.accepted, s.refused, s.deferred, s.errors, s.spot),
            (2, 1, 0, 1, 1)
        );
        assert_eq!(s.zones.get("h"), Some(&1));
        let expected = hourly_price(2.0, 4.0, false) + hourly_price(2.0, 4.0, true);
        assert!((s.hourly_price - expected).abs() < 1e-12);
        let c = compare(&placed, &placed);
        assert_eq!(c["different"], 0);
        assert_eq!(c["a"]["accepted"], 2);
    }
}
