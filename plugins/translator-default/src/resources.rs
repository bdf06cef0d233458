//! Container sizes and the instance spec.
//!
//! Units: CPU in millicores (ECI takes vCPU with three decimals, so a millicore is exact) and
//! memory in thousandths of a GiB ("milli-GiB", rounded **up** from bytes), so sums and
//! comparisons are integer math and a container never gets less than it asked for.

use core::fmt;

use vnode_plugin_sdk::translator::Container;
use vnode_plugin_sdk::{InstanceSpec, ResourceList};

use crate::errors::{Result, invalid};

/// The most vCPU one ECI instance has.
pub const MAX_CPU_MILLIS: u64 = 64_000;

const GIB: u64 = 1 << 30;

/// Supported vCPU/memory combinations in every region (ECI's spec table): `(millicores,
/// memory GiB)`, smallest first. Regional in-between sizes are left to `eci-use-specs`.
pub const SPECS: &[(u64, &[u64])] = &[
    (250, &[]), // 0.25 vCPU: 0.5 and 1 GiB, listed in SPECS_SUB_GIB below
    (500, &[1, 2]),
    (1000, &[2, 4, 8]),
    (2000, &[1, 2, 4, 8, 16]),
    (4000, &[2, 4, 8, 16, 32]),
    (8000, &[4, 8, 16, 32, 64]),
    (12_000, &[12, 24, 48, 96]),
    (16_000, &[16, 32, 64, 128]),
    (24_000, &[24, 48, 96, 192]),
    (32_000, &[32, 64, 128, 256]),
    (52_000, &[96, 192, 384]),
    (64_000, &[128, 256, 512]),
];

/// The 0.25 vCPU row, in milli-GiB (0.5 and 1 GiB).
const SPECS_SUB_GIB: &[u64] = &[500, 1000];

/// What one container is given, in exact units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Size {
    pub cpu_millis: u64,
    pub mem_milli_gib: u64,
    pub gpu: u32,
    pub ephemeral_bytes: u64,
    /// Whether the pod said anything about CPU or memory for this container.
    pub specified: bool,
}

impl Size {
    pub fn plus(self, o: Size) -> Size {
        Size {
            cpu_millis: self.cpu_millis + o.cpu_millis,
            mem_milli_gib: self.mem_milli_gib + o.mem_milli_gib,
            gpu: self.gpu + o.gpu,
            ephemeral_bytes: self.ephemeral_bytes + o.ephemeral_bytes,
            specified: self.specified || o.specified,
        }
    }

    pub fn max(self, o: Size) -> Size {
        Size {
            cpu_millis: self.cpu_millis.max(o.cpu_millis),
            mem_milli_gib: self.mem_milli_gib.max(o.mem_milli_gib),
            gpu: self.gpu.max(o.gpu),
            ephemeral_bytes: self.ephemeral_bytes.max(o.ephemeral_bytes),
            specified: self.specified || o.specified,
        }
    }

    /// vCPU as ECI takes it (`None` when the pod gave nothing).
    pub fn cpu_vcpu(&self) -> Option<f64> {
        (self.cpu_millis > 0).then(|| self.cpu_millis as f64 / 1000.0)
    }

    /// GiB as ECI takes it (`None` when the pod gave nothing).
    pub fn memory_gib(&self) -> Option<f64> {
        (self.mem_milli_gib > 0).then(|| self.mem_milli_gib as f64 / 1000.0)
    }
}

/// Bytes → milli-GiB, rounded up.
pub fn bytes_to_milli_gib(bytes: u64) -> u64 {
    (u128::from(bytes) * 1000).div_ceil(u128::from(GIB)) as u64
}

/// A container's size: the **limit** of each resource where one is set, else the request.
///
/// Why limits: an ECI instance is a dedicated VM, there is no node to burst into, so a
/// container capped at its request would be throttled or OOM-killed below the limit the user
/// wrote. ECI itself sizes the instance from the containers' specs, so passing the limit is how
/// "limits larger than requests" is honoured. GPUs are extended resources, where Kubernetes
/// requires limit == request.
pub fn container_size(c: &Container) -> Size {
    let req = &c.resources.requests;
    let lim = &c.resources.limits;
    let cpu = lim.cpu_millis.or(req.cpu_millis);
    let mem = lim.memory_bytes.or(req.memory_bytes);
    Size {
        cpu_millis: cpu.unwrap_or(0),
        mem_milli_gib: mem.map(bytes_to_milli_gib).unwrap_or(0),
        gpu: lim.gpu.or(req.gpu).unwrap_or(0),
        ephemeral_bytes: ephemeral(lim).or(ephemeral(req)).unwrap_or(0),
        specified: cpu.is_some() || mem.is_some(),
    }
}

fn ephemeral(l: &ResourceList) -> Option<u64> {
    l.ephemeral_storage_bytes
}

/// The smallest spec of the table that holds `cpu_millis` and `mem_milli_gib` (CPU first, then
/// memory, the way ECI rounds up), or `None` if nothing is that big.
pub fn round_up_to_spec(cpu_millis: u64, mem_milli_gib: u64) -> Option<InstanceSpec> {
    for (cpu, mems) in SPECS {
        if *cpu < cpu_millis {
            continue;
        }
        let row: Vec<u64> = if *cpu == 250 {
            SPECS_SUB_GIB.to_vec()
        } else {
            mems.iter().map(|g| g * 1000).collect()
        };
        if let Some(m) = row.into_iter().find(|m| *m >= mem_milli_gib) {
            return Some(InstanceSpec {
                cpu_millis: *cpu as u32,
                memory_mib: (m * 1024 / 1000) as u32,
            });
        }
    }
    None
}

/// Refuses a pod (or container, by `field`) that no ECI instance can hold.
pub fn check_fits(size: Size, field: impl fmt::Display, what: impl fmt::Display) -> Result<()> {
    if size.cpu_millis > MAX_CPU_MILLIS {
        return Err(invalid(
            field,
            format!(
                "{what} needs {} vCPU (limits, or requests where no limit is set); an ECI instance has at most 64 vCPU",
                fmt_milli(size.cpu_millis)
            ),
        ));
    }
    if size.mem_milli_gib > 512_000 {
        return Err(invalid(
            field,
            format!(
                "{what} needs {} GiB of memory; an ECI instance has at most 512 GiB",
                fmt_milli(size.mem_milli_gib)
            ),
        ));
    }
    Ok(())
}

/// `1500` → `1.5`, `64000` → `64`.
pub fn fmt_milli(v: u64) -> String {
    let (i, f) = (v / 1000, v % 1000);
    if f == 0 {
        format!("{i}")
    } else {
        format!("{i}.{f:03}").trim_end_matches('0').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(c: u64, m: u64) -> (u32, u32) {
        let s = round_up_to_spec(c, m).expect("fits");
        (s.cpu_millis, s.memory_mib)
    }

    #[test]
    fn rounds_up_like_eci() {
        assert_eq!(spec(250, 500), (250, 512));
        assert_eq!(spec(100, 100), (250, 512));
        assert_eq!(spec(250, 1000), (250, 1024));
        assert_eq!(spec(250, 1001), (500, 2048), "0.5 vCPU has 1 and 2 GiB");
        assert_eq!(
            spec(2000, 3000),
            (2000, 4096),
            "2c/3G -> 2c/4G (the documented example)"
        );
        assert_eq!(spec(7000, 13_000), (8000, 16_384), "7c/13G -> 8c/16G");
        assert_eq!(
            spec(1000, 10_000),
            (2000, 16_384),
            "1 vCPU tops out at 8 GiB"
        );
        assert_eq!(spec(0, 0), (250, 512), "nothing asked: the smallest spec");
        assert_eq!(spec(64_000, 512_000), (64_000, 524_288));
        assert!(round_up_to_spec(64_001, 0).is_none());
        assert!(round_up_to_spec(0, 512_001).is_none());
    }

    #[test]
    fn memory_units_round_up() {
        assert_eq!(bytes_to_milli_gib(GIB), 1000);
        assert_eq!(bytes_to_milli_gib(512 << 20), 500);
        assert_eq!(
            bytes_to_milli_gib(100 << 20),
            98,
            "0.09765625 GiB rounds up"
        );
        assert_eq!(bytes_to_milli_gib(1), 1);
        assert_eq!(fmt_milli(1500), "1.5");
        assert_eq!(fmt_milli(64_000), "64");
        assert_eq!(fmt_milli(98), "0.098");
    }
}
