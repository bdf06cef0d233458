//! The kubelet's `stats/v1alpha1` Summary (the subset metrics-server and the VK e2e suite
//! read) and its rendering as `/metrics/resource` Prometheus text.

use serde::{Deserialize, Serialize};

/// `/stats/summary` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The node's own stats.
    pub node: NodeStats,
    /// One entry per pod.
    pub pods: Vec<PodStats>,
}

impl Summary {
    /// A node with no pods and no usage samples.
    pub fn empty(node_name: &str) -> Self {
        Self {
            node: NodeStats {
                node_name: node_name.to_string(),
                start_time: None,
                cpu: None,
                memory: None,
            },
            pods: Vec::new(),
        }
    }
}

/// Node-level stats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    /// Node name.
    pub node_name: String,
    /// When the node (daemon) started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<jiff::Timestamp>,
    /// CPU usage (sum over pods for a virtual node).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    /// Memory usage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
}

/// A pod reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodReference {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// UID.
    pub uid: String,
}

/// Pod-level stats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    /// Which pod.
    pub pod_ref: PodReference,
    /// When the pod's container group started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<jiff::Timestamp>,
    /// Per container.
    pub containers: Vec<ContainerStats>,
    /// Pod CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    /// Pod memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
}

/// Container-level stats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    /// Container name.
    pub name: String,
    /// Container start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<jiff::Timestamp>,
    /// CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    /// Memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
}

/// CPU sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    /// Sample time.
    pub time: jiff::Timestamp,
    /// Current usage in nanocores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_nano_cores: Option<u64>,
    /// Cumulative usage in core-nanoseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_core_nano_seconds: Option<u64>,
}

/// Memory sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    /// Sample time.
    pub time: jiff::Timestamp,
    /// Working set in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_set_bytes: Option<u64>,
    /// Total usage in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_bytes: Option<u64>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `core-seconds timestamp-ms` of a CPU sample that has a cumulative usage.
fn cpu_sample(c: Option<&CpuStats>) -> Option<String> {
    let c = c?;
    let seconds = c.usage_core_nano_seconds? as f64 / 1e9;
    Some(format!("{seconds} {}", c.time.as_millisecond()))
}

/// `bytes timestamp-ms` of a memory sample that has a working set.
fn memory_sample(m: Option<&MemoryStats>) -> Option<String> {
    let m = m?;
    Some(format!(
        "{} {}",
        m.working_set_bytes?,
        m.time.as_millisecond()
    ))
}

/// Appends `name{labels} value` (no braces without labels) when there is a value.
fn write_sample(out: &mut String, name: &str, labels: &str, value: Option<String>) {
    use std::fmt::Write;
    let Some(value) = value else { return };
    let _ = if labels.is_empty() {
        writeln!(out, "{name} {value}")
    } else {
        writeln!(out, "{name}{{{labels}}} {value}")
    };
}

/// Renders the kubelet's `/metrics/resource` families from a summary: what metrics-server
/// scrapes (`node_*`, `pod_*`, `container_*` cpu/memory, with sample timestamps in ms).
pub fn render_resource_metrics(s: &Summary) -> String {
    use std::fmt::Write;
    let mut cpu_node = String::new();
    let mut mem_node = String::new();
    let mut cpu_pod = String::new();
    let mut mem_pod = String::new();
    let mut cpu_ctr = String::new();
    let mut mem_ctr = String::new();
    let mut start_ctr = String::new();
    let node_cpu = cpu_sample(s.node.cpu.as_ref());
    write_sample(&mut cpu_node, "node_cpu_usage_seconds_total", "", node_cpu);
    let node_memory = memory_sample(s.node.memory.as_ref());
    write_sample(
        &mut mem_node,
        "node_memory_working_set_bytes",
        "",
        node_memory,
    );
    for p in &s.pods {
        let pl = format!(
            "namespace=\"{}\",pod=\"{}\"",
            escape(&p.pod_ref.namespace),
            escape(&p.pod_ref.name)
        );
        let cpu = cpu_sample(p.cpu.as_ref());
        write_sample(&mut cpu_pod, "pod_cpu_usage_seconds_total", &pl, cpu);
        let memory = memory_sample(p.memory.as_ref());
        write_sample(&mut mem_pod, "pod_memory_working_set_bytes", &pl, memory);
        for c in &p.containers {
            let cl = format!("container=\"{}\",{pl}", escape(&c.name));
            let cpu = cpu_sample(c.cpu.as_ref());
            write_sample(&mut cpu_ctr, "container_cpu_usage_seconds_total", &cl, cpu);
            let memory = memory_sample(c.memory.as_ref());
            write_sample(
                &mut mem_ctr,
                "container_memory_working_set_bytes",
                &cl,
                memory,
            );
            let started = c.start_time.map(|t| t.as_second().to_string());
            write_sample(&mut start_ctr, "container_start_time_seconds", &cl, started);
        }
    }
    let mut out = String::new();
    for (name, kind, help, body) in [
        (
            "node_cpu_usage_seconds_total",
            "counter",
            "Cumulative cpu time consumed by the node in core-seconds",
            cpu_node,
        ),
        (
            "node_memory_working_set_bytes",
            "gauge",
            "Current working set of the node in bytes",
            mem_node,
        ),
        (
            "pod_cpu_usage_seconds_total",
            "counter",
            "Cumulative cpu time consumed by the pod in core-seconds",
            cpu_pod,
        ),
        (
            "pod_memory_working_set_bytes",
            "gauge",
            "Current working set of the pod in bytes",
            mem_pod,
        ),
        (
            "container_cpu_usage_seconds_total",
            "counter",
            "Cumulative cpu time consumed by the container in core-seconds",
            cpu_ctr,
        ),
        (
            "container_memory_working_set_bytes",
            "gauge",
            "Current working set of the container in bytes",
            mem_ctr,
        ),
        (
            "container_start_time_seconds",
            "gauge",
            "Start time of the container since unix epoch in seconds",
            start_ctr,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        out.push_str(&body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_metrics_server_reads() {
        let t: jiff::Timestamp = "2026-11-25T18:00:00Z".parse().expect("time");
        let s = Summary {
            node: NodeStats {
                node_name: "vk".into(),
                start_time: None,
                cpu: Some(CpuStats {
                    time: t,
                    usage_nano_cores: None,
                    usage_core_nano_seconds: Some(7_000_000_000),
                }),
                memory: None,
            },
            pods: vec![PodStats {
                pod_ref: PodReference {
                    name: "web".into(),
                    namespace: "default".into(),
                    uid: "u1".into(),
                },
                start_time: Some(t),
                containers: vec![ContainerStats {
                    name: "nginx".into(),
                    start_time: Some(t),
                    cpu: Some(CpuStats {
                        time: t,
                        usage_nano_cores: Some(5_000_000),
                        usage_core_nano_seconds: Some(2_500_000_000),
                    }),
                    memory: Some(MemoryStats {
                        time: t,
                        working_set_bytes: Some(1024),
                        usage_bytes: Some(2048),
                    }),
                }],
                cpu: Some(CpuStats {
                    time: t,
                    usage_nano_cores: None,
                    usage_core_nano_seconds: Some(2_500_000_000),
                }),
                memory: Some(MemoryStats {
                    time: t,
                    working_set_bytes: Some(1024),
                    usage_bytes: None,
                }),
            }],
        };
        let text = render_resource_metrics(&s);
        assert!(
            text.contains(
                "pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"web\"} 2.5 1795629600000"
            ),
            "{text}"
        );
        assert!(text.contains("container_memory_working_set_bytes{container=\"nginx\",namespace=\"default\",pod=\"web\"} 1024"), "{text}");
        assert!(text.contains("# TYPE container_cpu_usage_seconds_total counter"));
        assert!(
            text.contains("\nnode_cpu_usage_seconds_total 7 1795629600000\n"),
            "{text}"
        );
        // A family without samples keeps its header and has no lines.
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("node_memory_working_set_bytes")),
            "{text}"
        );
        assert!(
            text.contains("container_start_time_seconds{container=\"nginx\",namespace=\"default\",pod=\"web\"} 1795629600\n"),
            "{text}"
        );
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(json["pods"][0]["podRef"]["uid"], "u1");
        assert_eq!(
            json["pods"][0]["containers"][0]["cpu"]["usageNanoCores"],
            5_000_000
        );
        assert_eq!(json["node"]["nodeName"], "vk");
    }
}
