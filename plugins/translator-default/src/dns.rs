//! DNS policy and configuration, as a kubelet would write resolv.conf.

use vnode_plugin_sdk::translator::{EciDnsConfig, NodeDefaults, ResolvedPod};

use crate::errors::{Result, invalid};

/// `(DnsPolicy, DnsConfig)` for the request.
///
/// - `ClusterFirst` (the default, and `ClusterFirstWithHostNet`, which means the same without
///   host networking): ECI policy `None` with the node's cluster DNS servers, the search path
///   `<ns>.svc.<domain> svc.<domain> <domain>` and `ndots:5`, then the pod's own `dnsConfig`
///   merged in the kubelet's way (servers and searches appended, options overriding by name).
///   Without configured cluster DNS servers the kubelet falls back to `Default`, and so do we.
/// - `Default`: ECI `Default` (the VPC resolver), plus the pod's `dnsConfig` if any.
/// - `None`: ECI `None` with exactly the pod's `dnsConfig` (Kubernetes requires one).
pub fn dns(
    pod: &ResolvedPod,
    node: &NodeDefaults,
) -> Result<(Option<String>, Option<EciDnsConfig>)> {
    let own = pod.dns_config.as_ref().map(|c| EciDnsConfig {
        name_servers: c.nameservers.clone(),
        searches: c.searches.clone(),
        options: c
            .options
            .iter()
            .map(|o| (o.name.clone(), o.value.clone()))
            .collect(),
    });
    let policy = pod.dns_policy.as_deref().unwrap_or("ClusterFirst");
    match policy {
        "ClusterFirst" | "ClusterFirstWithHostNet" if !node.cluster_dns.is_empty() => {
            let domain = trim_dots(&node.cluster_domain);
            let domain = if domain.is_empty() {
                "cluster.local"
            } else {
                domain
            };
            let ns = &pod.meta.namespace;
            let mut cfg = EciDnsConfig {
                name_servers: node.cluster_dns.clone(),
                searches: vec![
                    joined(&[ns.as_str(), ".svc.", domain]),
                    joined(&["svc.", domain]),
                    domain.to_string(),
                ],
                options: vec![("ndots".to_string(), Some("5".to_string()))],
            };
            if let Some(own) = own {
                merge(&mut cfg, own);
            }
            Ok((Some("None".to_string()), Some(cfg)))
        }
        "ClusterFirst" | "ClusterFirstWithHostNet" | "Default" => {
            Ok((Some("Default".to_string()), own))
        }
        "None" => match own {
            Some(cfg) => Ok((Some("None".to_string()), Some(cfg))),
            None => Err(invalid(
                "spec.dnsConfig",
                "dnsPolicy None needs a dnsConfig",
            )),
        },
        other => Err(invalid(
            "spec.dnsPolicy",
            format!("unknown DNS policy {other:?}"),
        )),
    }
}

/// The parts one after another (`[..].concat()` without its generic slice-join code).
fn joined(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.push_str(part);
    }
    out
}

/// `domain` without leading and trailing dots (`str::trim_matches('.')`, as a byte scan: `.` is
/// ASCII, and the generic char searcher is far more code for every ClusterFirst pod).
fn trim_dots(domain: &str) -> &str {
    let start = domain
        .bytes()
        .position(|b| b != b'.')
        .unwrap_or(domain.len());
    let end = domain
        .bytes()
        .rposition(|b| b != b'.')
        .map_or(start, |last| last + 1);
    &domain[start..end]
}

/// Appends `extra` to `base` the way the kubelet merges a pod's `dnsConfig`: servers and
/// searches appended without duplicates, options replaced by name or appended.
pub fn merge(base: &mut EciDnsConfig, extra: EciDnsConfig) {
    for s in extra.name_servers {
        if !base.name_servers.contains(&s) {
            base.name_servers.push(s);
        }
    }
    for s in extra.searches {
        if !base.searches.contains(&s) {
            base.searches.push(s);
        }
    }
    for (name, value) in extra.options {
        match base.options.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => base.options.push((name, value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::trim_dots;

    #[test]
    fn trim_dots_is_trim_matches_dot() {
        for d in [
            "",
            ".",
            "...",
            "cluster.local",
            ".cluster.local.",
            "..a..b..",
            "é.",
            ".é",
        ] {
            assert_eq!(trim_dots(d), d.trim_matches('.'), "{d:?}");
        }
    }
}
