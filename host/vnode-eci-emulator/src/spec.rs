//! Instance specs: the supported vCPU/memory combinations and round-up, limits, prices.

/// Supported (vCPU, [GiB…]) combinations in every region.
pub const SPECS: &[(f64, &[f64])] = &[
    (0.25, &[0.5, 1.0]),
    (0.5, &[1.0, 2.0]),
    (1.0, &[2.0, 4.0, 8.0]),
    (2.0, &[1.0, 2.0, 4.0, 8.0, 16.0]),
    (4.0, &[2.0, 4.0, 8.0, 16.0, 32.0]),
    (8.0, &[4.0, 8.0, 16.0, 32.0, 64.0]),
    (12.0, &[12.0, 24.0, 48.0, 96.0]),
    (16.0, &[16.0, 32.0, 64.0, 128.0]),
    (24.0, &[24.0, 48.0, 96.0, 192.0]),
    (32.0, &[32.0, 64.0, 128.0, 256.0]),
    (52.0, &[96.0, 192.0, 384.0]),
    (64.0, &[128.0, 256.0, 512.0]),
];

/// Maximum vCPUs per instance.
pub const MAX_CPU: f64 = 64.0;
/// Maximum containers per group (containers + init containers each).
pub const MAX_CONTAINERS: usize = 20;
/// Maximum volumes per group.
pub const MAX_VOLUMES: usize = 20;
/// Maximum tags per group.
pub const MAX_TAGS: usize = 20;

/// Rounds a request up to the smallest supported spec that covers it (fewest vCPUs first,
/// then least memory). `None` if nothing is big enough.
pub fn round_up(cpu: f64, memory: f64) -> Option<(f64, f64)> {
    const EPS: f64 = 1e-9;
    SPECS
        .iter()
        .filter(|(c, _)| *c + EPS >= cpu)
        .find_map(|(c, mems)| mems.iter().find(|m| **m + EPS >= memory).map(|m| (*c, *m)))
}

/// `2.0-4.0Gi`.
pub fn spec_name(cpu: f64, memory: f64) -> String {
    format!("{cpu:.1}-{memory:.1}Gi")
}

/// USD per vCPU-second (public list price).
pub const PRICE_PER_VCPU_SECOND: f64 = 0.000_007_7;
/// USD per GiB-second.
pub const PRICE_PER_GIB_SECOND: f64 = 0.000_000_96;
/// Spot price as a fraction of the on-demand price.
pub const SPOT_FRACTION: f64 = 0.2;

/// vCPU and GiB at which `DescribeContainerGroupPrice` prices an ECS instance type (the
/// emulator has no per-type table).
pub const INSTANCE_TYPE_PRICED_AS: (f64, f64) = (2.0, 4.0);

/// USD per hour for a container group of `cpu` vCPU and `memory` GiB, on-demand or spot, from
/// the same per-second list prices `DescribeContainerGroupPrice` answers with (no storage).
/// `vnode plugin simulate --against` estimates a policy's cost with it.
pub fn hourly_price(cpu: f64, memory: f64, spot: bool) -> f64 {
    let per_second = cpu * PRICE_PER_VCPU_SECOND + memory * PRICE_PER_GIB_SECOND;
    let fraction = if spot { SPOT_FRACTION } else { 1.0 };
    per_second * 3600.0 * fraction
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_up() {
        assert_eq!(round_up(0.1, 0.1), Some((0.25, 0.5)));
        assert_eq!(round_up(2.0, 3.0), Some((2.0, 4.0)));
        assert_eq!(round_up(7.0, 13.0), Some((8.0, 16.0)));
        assert_eq!(round_up(1.0, 10.0), Some((2.0, 16.0)));
        assert_eq!(round_up(64.0, 600.0), None);
        assert_eq!(round_up(65.0, 1.0), None);
    }

    #[test]
    fn hourly_price_matches_the_per_second_list_price() {
        let on_demand = hourly_price(2.0, 4.0, false);
        let expected = (2.0 * PRICE_PER_VCPU_SECOND + 4.0 * PRICE_PER_GIB_SECOND) * 3600.0;
        assert!((on_demand - expected).abs() < 1e-12);
        assert!((hourly_price(2.0, 4.0, true) - on_demand * SPOT_FRACTION).abs() < 1e-12);
    }
}
