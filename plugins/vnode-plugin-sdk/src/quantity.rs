//! Quantities: the pod's effective resource requests, and parsing/formatting of Kubernetes
//! quantity strings for plugin configuration (`max-memory = 8Gi`).
//!
//! The host already parses the pod's own quantities (`cpu-millis`, `memory-bytes`); these
//! helpers add them up the way Kubernetes does and read quantities a plugin's configuration
//! contains.

use crate::ResourceList;
use crate::placement::{ContainerView, PodView};

/// CPU, memory and GPUs, summed over a pod.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// Millicores (`1` vCPU = 1000).
    pub cpu_millis: u64,
    /// Bytes.
    pub memory_bytes: u64,
    /// Whole GPUs.
    pub gpu: u32,
}

impl Resources {
    /// Memory in MiB, rounded up.
    pub fn memory_mib(&self) -> u64 {
        self.memory_bytes.div_ceil(1 << 20)
    }

    /// The component-wise maximum.
    pub fn max(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.max(other.cpu_millis),
            memory_bytes: self.memory_bytes.max(other.memory_bytes),
            gpu: self.gpu.max(other.gpu),
        }
    }

    /// The component-wise sum (saturating: a hostile pod cannot overflow a plugin).
    pub fn plus(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
            gpu: self.gpu.saturating_add(other.gpu),
        }
    }
}

fn pick(request: Option<u64>, limit: Option<u64>) -> u64 {
    // Kubernetes defaults a missing request to the limit.
    request.or(limit).unwrap_or(0)
}

/// What one container asks for: its requests, each falling back to its limit when only the
/// limit is set (as the API server defaults them).
pub fn container_requests(container: &ContainerView) -> Resources {
    let r: &ResourceList = &container.resources.requests;
    let l: &ResourceList = &container.resources.limits;
    Resources {
        cpu_millis: pick(r.cpu_millis, l.cpu_millis),
        memory_bytes: pick(r.memory_bytes, l.memory_bytes),
        gpu: r.gpu.or(l.gpu).unwrap_or(0),
    }
}

/// The pod's effective request, as the Kubernetes scheduler computes it: the sum over the
/// app containers, or the largest init container if that is bigger (init containers run one
/// at a time, before the app containers).
pub fn pod_requests(pod: &PodView) -> Resources {
    let apps = pod
        .containers
        .iter()
        .map(container_requests)
        .fold(Resources::default(), Resources::plus);
    pod.init_containers
        .iter()
        .map(container_requests)
        .fold(apps, Resources::max)
}

/// Parses a Kubernetes CPU quantity (`500m`, `2`, `0.5`, `1.5k`) into millicores.
pub fn parse_cpu_millis(text: &str) -> Result<u64, String> {
    let value = parse_quantity(text)?;
    let millis = value * 1000.0;
    if millis > u64::MAX as f64 {
        return Err(format!("CPU quantity {text:?} is too large"));
    }
    Ok(millis.ceil() as u64)
}

/// Parses a Kubernetes memory/storage quantity (`512Mi`, `1Gi`, `1G`, `1e9`, `1024`) into bytes.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let value = parse_quantity(text)?;
    if value > u64::MAX as f64 {
        return Err(format!("quantity {text:?} is too large"));
    }
    Ok(value.ceil() as u64)
}

/// Parses a Kubernetes quantity into its plain value (`500m` = 0.5, `1Ki` = 1024).
pub fn parse_quantity(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let bad = || format!("{text:?} is not a Kubernetes quantity (e.g. 500m, 2, 512Mi, 1Gi)");
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(t.len());
    let (number, suffix) = t.split_at(split);
    // Exponent notation (`1e3`, `1E-3`): the suffix starts with e/E followed by a number.
    let (number, multiplier) = match suffix {
        "" => (number, 1.0),
        "m" => (number, 1e-3),
        "k" => (number, 1e3),
        "M" => (number, 1e6),
        "G" => (number, 1e9),
        "T" => (number, 1e12),
        "P" => (number, 1e15),
        "E" => (number, 1e18),
        "Ki" => (number, 1024.0),
        "Mi" => (number, 1024.0 * 1024.0),
        "Gi" => (number, 1024.0 * 1024.0 * 1024.0),
        "Ti" => (number, 1024f64.powi(4)),
        "Pi" => (number, 1024f64.powi(5)),
        "Ei" => (number, 1024f64.powi(6)),
        s if s.starts_with(['e', 'E']) => {
            let exp: i32 = s[1..].parse().map_err(|_| bad())?;
            (number, 10f64.powi(exp))
        }
        _ => return Err(bad()),
    };
    if number.is_empty() {
        return Err(bad());
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let value = value * multiplier;
    if !value.is_finite() || value < 0.0 {
        return Err(bad());
    }
    Ok(value)
}

/// Millicores as Kubernetes writes them: `250m`, `2`.
pub fn format_cpu(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        format!("{}", millis / 1000)
    } else {
        format!("{millis}m")
    }
}

/// Bytes in the largest binary unit that divides them exactly: `512Mi`, `4Gi`, `1000`.
pub fn format_bytes(bytes: u64) -> String {
    for (unit, size) in [
        ("Ti", 1u64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{container, pod};

    #[test]
    fn parses_cpu_and_memory() {
        assert_eq!(parse_cpu_millis("500m"), Ok(500));
        assert_eq!(parse_cpu_millis("2"), Ok(2000));
        assert_eq!(parse_cpu_millis("0.25"), Ok(250));
        assert_eq!(parse_cpu_millis("1e0"), Ok(1000));
        assert_eq!(parse_bytes("512Mi"), Ok(512 << 20));
        assert_eq!(parse_bytes("1Gi"), Ok(1 << 30));
        assert_eq!(parse_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("1.5Ki"), Ok(1536));
        assert_eq!(parse_bytes(" 1024 "), Ok(1024));
        for bad in ["", "Gi", "lots", "1GB", "-1", "1.2.3Mi", "1e"] {
            assert!(parse_bytes(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn formats_round_trip() {
        assert_eq!(format_cpu(250), "250m");
        assert_eq!(format_cpu(2000), "2");
        assert_eq!(format_bytes(512 << 20), "512Mi");
        assert_eq!(format_bytes(4 << 30), "4Gi");
        assert_eq!(format_bytes(1000), "1000");
        for b in [512u64 << 20, 3 << 30, 1536] {
            assert_eq!(parse_bytes(&format_bytes(b)), Ok(b));
        }
    }

    #[test]
    fn pod_requests_follow_kubernetes_rules() {
        let mut p = pod("default", "web");
        p.containers
            .push(container("app", Some(500), Some(256 << 20)));
        p.containers
            .push(container("sidecar", Some(250), Some(128 << 20)));
        // Limits only: the request defaults to the limit.
        let mut limited = container("limited", None, None);
        limited.resources.limits.cpu_millis = Some(1000);
        p.containers.push(limited);
        let r = pod_requests(&p);
        assert_eq!(r.cpu_millis, 1750);
        assert_eq!(r.memory_bytes, 384 << 20);
        assert_eq!(r.memory_mib(), 384);
        // A big init container dominates what it exceeds.
        p.init_containers
            .push(container("migrate", Some(4000), Some(64 << 20)));
        let r = pod_requests(&p);
        assert_eq!((r.cpu_millis, r.memory_bytes), (4000, 384 << 20));
    }
}
