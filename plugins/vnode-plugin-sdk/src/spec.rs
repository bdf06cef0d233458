//! ECI instance specs: the `2-4Gi` notation, `eci-use-specs` parsing, and picking the smallest
//! candidate spec that fits a pod.

use crate::eci::{ANN_USE_SPECS, split_list};
use crate::quantity::Resources;
use crate::{InstanceSpec, Sizing};

/// One entry of `eci-use-specs`.
#[derive(Debug, Clone, PartialEq)]
pub enum UseSpec {
    /// A vCPU/memory combination (`2-4Gi`).
    Spec(InstanceSpec),
    /// An ECS instance type such as `ecs.c6.large`.
    EcsType(String),
}

/// `2-4Gi`, `0.25-0.5Gi`: how ECI and its annotations write a spec (and how the host reports
/// stock-outs).
pub fn label(spec: &InstanceSpec) -> String {
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

/// Parses one entry: `<vcpu>-<mem>Gi` is a spec, `ecs.*` an instance type.
pub fn parse(entry: &str) -> Result<UseSpec, String> {
    let entry = entry.trim();
    if entry.starts_with("ecs.") {
        return Ok(UseSpec::EcsType(entry.to_string()));
    }
    let bad = || format!("{entry:?} is neither `<vcpu>-<mem>Gi` nor `ecs.<type>`");
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

/// Parses `eci-use-specs` into sizings in the user's order: each vCPU/memory spec is its own
/// sizing; ECS types are grouped into one `instance-types` sizing at the position of the first.
pub fn parse_use_specs(value: &str) -> Result<Vec<Sizing>, String> {
    let mut sizings = Vec::new();
    let mut ecs_slot: Option<usize> = None;
    for entry in split_list(value) {
        match parse(&entry).map_err(|e| format!("{ANN_USE_SPECS}: {e}"))? {
            UseSpec::Spec(spec) => sizings.push(Sizing::Spec(spec)),
            UseSpec::EcsType(ty) => match ecs_slot {
                Some(slot) => {
                    if let Some(Sizing::InstanceTypes(types)) = sizings.get_mut(slot) {
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

/// Whether `spec` covers `need` (vCPU and memory).
pub fn fits(spec: &InstanceSpec, need: &Resources) -> bool {
    u64::from(spec.cpu_millis) >= need.cpu_millis
        && u64::from(spec.memory_mib) * (1 << 20) >= need.memory_bytes
}

/// The smallest candidate (fewest vCPUs, then least memory) that covers `need`, as ECI's own
/// round-up picks it; `None` if none is big enough.
pub fn smallest_fitting(candidates: &[InstanceSpec], need: &Resources) -> Option<InstanceSpec> {
    candidates
        .iter()
        .filter(|s| fits(s, need))
        .min_by_key(|s| (s.cpu_millis, s.memory_mib))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cpu_millis: u32, memory_mib: u32) -> InstanceSpec {
        InstanceSpec {
            cpu_millis,
            memory_mib,
        }
    }

    #[test]
    fn labels_and_parses() {
        assert_eq!(label(&spec(2000, 4096)), "2-4Gi");
        assert_eq!(label(&spec(250, 512)), "0.25-0.5Gi");
        assert_eq!(parse("2-4Gi"), Ok(UseSpec::Spec(spec(2000, 4096))));
        assert_eq!(parse("0.5-1G"), Ok(UseSpec::Spec(spec(500, 1024))));
        assert_eq!(
            parse("ecs.c6.large"),
            Ok(UseSpec::EcsType("ecs.c6.large".into()))
        );
        for bad in ["lots", "2-4", "0-1Gi", "x-1Gi", "999-1Gi"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn use_specs_keep_order_and_group_ecs_types() {
        let s = parse_use_specs("2-4Gi,ecs.c6.large,0.5-1Gi,ecs.g6.large").expect("valid");
        assert_eq!(
            s,
            [
                Sizing::Spec(spec(2000, 4096)),
                Sizing::InstanceTypes(vec!["ecs.c6.large".into(), "ecs.g6.large".into()]),
                Sizing::Spec(spec(500, 1024)),
            ]
        );
        assert!(
            parse_use_specs(" , ")
                .expect_err("empty")
                .contains("lists no spec")
        );
        assert!(parse_use_specs("lots").expect_err("bad").contains("lots"));
    }

    #[test]
    fn picks_the_smallest_fitting_spec() {
        let candidates = [
            spec(4000, 8192),
            spec(250, 512),
            spec(1000, 2048),
            spec(2000, 4096),
        ];
        let need = |cpu, mib: u64| Resources {
            cpu_millis: cpu,
            memory_bytes: mib << 20,
            gpu: 0,
        };
        assert_eq!(
            smallest_fitting(&candidates, &need(100, 100)),
            Some(spec(250, 512))
        );
        assert_eq!(
            smallest_fitting(&candidates, &need(1000, 2048)),
            Some(spec(1000, 2048))
        );
        assert_eq!(
            smallest_fitting(&candidates, &need(1001, 10)),
            Some(spec(2000, 4096))
        );
        assert_eq!(
            smallest_fitting(&candidates, &need(500, 5000)),
            Some(spec(4000, 8192))
        );
        assert_eq!(smallest_fitting(&candidates, &need(8000, 1)), None);
    }
}
