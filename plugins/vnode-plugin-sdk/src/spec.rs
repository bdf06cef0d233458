//! ECI instance specs: the `2-4Gi` notation, `eci-use-specs` parsing, and picking the smallest
//! candidate spec that fits a pod.

use crate::eci::{ANN_USE_SPECS, list_entries};
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
    SpecLabel::of(spec).as_str().to_string()
}

/// A spec's [`label`] on the stack, for comparing with a label the host sent (e.g. a
/// stock-out's spec) without allocating.
///
/// Written with integer arithmetic: vCPU in thousandths (exactly the millicores) and GiB
/// rounded to thousandths (half to even, as `format!("{:.3}")` rounds the exact binary value
/// `memory_mib / 1024`), trailing zeros and a trailing `.` dropped. Float formatting pulled
/// hundreds of instructions of `core::fmt` and big-number code into every placement decision
/// of a pod with `eci-use-specs` (the most expensive case of the golden corpus).
#[derive(Clone, Copy)]
pub struct SpecLabel {
    bytes: [u8; SpecLabel::CAPACITY],
    len: usize,
}

impl SpecLabel {
    /// The longest label: `4294967.295-4194303.999Gi` (25 bytes).
    const CAPACITY: usize = 32;

    /// The label of `spec`.
    pub fn of(spec: &InstanceSpec) -> SpecLabel {
        let mut label = SpecLabel {
            bytes: [0; SpecLabel::CAPACITY],
            len: 0,
        };
        label.push_thousandths(u64::from(spec.cpu_millis));
        label.push(b'-');
        let scaled = u64::from(spec.memory_mib) * 1000;
        let (whole, rest) = (scaled / 1024, scaled % 1024);
        let round_up = rest > 512 || (rest == 512 && whole % 2 == 1);
        label.push_thousandths(whole + u64::from(round_up));
        label.push(b'G');
        label.push(b'i');
        label
    }

    /// The label as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits, `.`, `-`, `G` and `i` are ever written.
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }

    fn push(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    /// `value / 1000` in decimal with up to three fraction digits, trailing zeros dropped.
    fn push_thousandths(&mut self, value: u64) {
        self.push_decimal(value / 1000);
        let mut fraction = value % 1000;
        if fraction == 0 {
            return;
        }
        self.push(b'.');
        let mut digits = 3;
        while fraction.is_multiple_of(10) {
            fraction /= 10;
            digits -= 1;
        }
        let mut divisor = 10u64.pow(digits - 1);
        while divisor > 0 {
            self.push(b'0' + (fraction / divisor % 10) as u8);
            divisor /= 10;
        }
    }

    fn push_decimal(&mut self, value: u64) {
        let mut divisor = 1;
        while value / divisor >= 10 {
            divisor *= 10;
        }
        while divisor > 0 {
            self.push(b'0' + (value / divisor % 10) as u8);
            divisor /= 10;
        }
    }
}

impl PartialEq<str> for SpecLabel {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl core::fmt::Debug for SpecLabel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
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
    for entry in list_entries(value) {
        match parse(entry).map_err(|e| format!("{ANN_USE_SPECS}: {e}"))? {
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

    /// The label as it was written before `SpecLabel`: float formatting.
    fn float_label(spec: &InstanceSpec) -> String {
        fn trim_float(v: f64) -> String {
            let s = format!("{v:.3}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
        format!(
            "{}-{}Gi",
            trim_float(spec.cpu_millis as f64 / 1000.0),
            trim_float(spec.memory_mib as f64 / 1024.0)
        )
    }

    #[test]
    fn integer_labels_equal_float_formatting() {
        // Every vCPU count up to 300, every memory size up to 2 TiB (ECI's largest is 512 GiB),
        // powers of two, the extremes and a spread of others; the asserts below name rounding
        // ties (`0.0625` GiB → `0.062`, `0.1875` → `0.188`).
        let spread = || (0..10_000u32).map(|i| i.wrapping_mul(2_654_435_761));
        let edges = || {
            (0..32).map(|b| 1u32 << b).chain([
                u32::MAX,
                u32::MAX - 1,
                u32::MAX - 512,
                1_000_000_001,
            ])
        };
        for cpu in (0..=300_000).chain(edges()).chain(spread()) {
            let s = spec(cpu, 512);
            assert_eq!(label(&s), float_label(&s), "{s:?}");
        }
        for mib in (0..=(2 << 20)).chain(edges()).chain(spread()) {
            let s = spec(1000, mib);
            assert_eq!(label(&s), float_label(&s), "{s:?}");
        }
        assert_eq!(
            label(&spec(250, 64)),
            "0.25-0.062Gi",
            "a tie rounds to even"
        );
        assert_eq!(
            label(&spec(250, 192)),
            "0.25-0.188Gi",
            "a tie rounds to even"
        );
        assert_eq!(label(&spec(1, 1023)), "0.001-0.999Gi");
        assert_eq!(label(&spec(999_999, 1_048_575)), "999.999-1023.999Gi");
        assert_eq!(
            label(&spec(u32::MAX, u32::MAX)),
            "4294967.295-4194303.999Gi"
        );
        assert!(SpecLabel::of(&spec(2000, 4096)) == *"2-4Gi");
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
