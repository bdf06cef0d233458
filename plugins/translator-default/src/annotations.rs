//! The documented `k8s.aliyun.com/*` (and `kubernetes.io/*-bandwidth`) pod annotations that
//! shape the CreateContainerGroup request. Placement-related ones (`eci-vswitch`,
//! `eci-schedule-strategy`, `eci-use-specs`, `eci-spot-*`, `eci-compute-category` …) belong to the
//! placement plugin and reach this translator through the attempt. Unknown ones are ignored.
//!
//! One pass over the pod's annotations picks out the values; JSON is parsed only for the two
//! annotations that carry JSON, and only when present.

use vnode_plugin_sdk::KeyValue;
use vnode_plugin_sdk::eci::list_entries;
use vnode_plugin_sdk::translator::{EciDnsConfig, EciHostAlias};

use crate::errors::{Result, invalid};

const PREFIX: &str = "k8s.aliyun.com/";

/// The annotations this translator reads, borrowed from the pod.
#[derive(Debug, Default)]
pub struct Annotations<'a> {
    pub security_group: Option<&'a str>,
    pub resource_group_id: Option<&'a str>,
    pub custom_hosts: Option<&'a str>,
    pub custom_tags: Option<&'a str>,
    pub custom_dns: Option<&'a str>,
    pub ram_role: Option<&'a str>,
    pub auto_imc: Option<&'a str>,
    /// The older `eci-image-cache: "true"` switch.
    pub image_cache: Option<&'a str>,
    /// `eci-imc-id`, or its older names `eci-image-snapshot-id`.
    pub imc_id: Option<&'a str>,
    pub with_eip: Option<&'a str>,
    pub eip_instance_id: Option<&'a str>,
    pub eip_bandwidth: Option<&'a str>,
    pub eip_isp: Option<&'a str>,
    pub eip_bandwidth_package: Option<&'a str>,
    pub extra_ephemeral_storage: Option<&'a str>,
    pub ntp_server: Option<&'a str>,
    pub core_pattern: Option<&'a str>,
    pub enable_ipv6: Option<&'a str>,
    pub private_ip: Option<&'a str>,
    pub fixed_ip: Option<&'a str>,
    pub fixed_ip_retain_hour: Option<&'a str>,
    pub ingress_bandwidth: Option<&'a str>,
    pub egress_bandwidth: Option<&'a str>,
    pub gpu_driver_version: Option<&'a str>,
    pub plain_http_registry: Option<&'a str>,
    pub insecure_registry: Option<&'a str>,
    pub acr_instance_ids: Option<&'a str>,
    pub max_pending_minute: Option<&'a str>,
    pub data_cache_bucket: Option<&'a str>,
    pub data_cache_pl: Option<&'a str>,
    pub data_cache_iops: Option<&'a str>,
    pub data_cache_bursting: Option<&'a str>,
    /// Whether any annotation that shapes the instance (everything above but the security
    /// group and the custom hosts, tags and DNS) is set: most pods have none, and the
    /// translation then skips those checks.
    pub instance_level: bool,
}

impl<'a> Annotations<'a> {
    pub fn read(all: &'a [KeyValue]) -> Self {
        let mut a = Annotations::default();
        for kv in all {
            let v = Some(kv.value.as_str());
            let Some(short) = kv.key.strip_prefix(PREFIX) else {
                match kv.key.as_str() {
                    "kubernetes.io/ingress-bandwidth" => a.ingress_bandwidth = v,
                    "kubernetes.io/egress-bandwidth" => a.egress_bandwidth = v,
                    _ => continue,
                }
                a.instance_level = true;
                continue;
            };
            match short {
                "eci-security-group" => a.security_group = v,
                "eci-resource-group-id" => a.resource_group_id = v,
                "eci-custom-hosts" => a.custom_hosts = v,
                "eci-custom-tags" => a.custom_tags = v,
                "eci-custom-dnsconfig" => a.custom_dns = v,
                "eci-ram-role-name" => a.ram_role = v,
                "eci-auto-imc" => a.auto_imc = v,
                "eci-image-cache" => a.image_cache = v,
                "eci-imc-id" => a.imc_id = v,
                "eci-image-snapshot-id" => a.imc_id = a.imc_id.or(v),
                "eci-with-eip" => a.with_eip = v,
                "eci-eip-instanceid" => a.eip_instance_id = v,
                "eip-bandwidth" => a.eip_bandwidth = v,
                "eip-isp" => a.eip_isp = v,
                "eip-common-bandwidth-package-id" => a.eip_bandwidth_package = v,
                "eci-extra-ephemeral-storage" => a.extra_ephemeral_storage = v,
                "eci-ntp-server" => a.ntp_server = v,
                "eci-core-pattern" => a.core_pattern = v,
                "eci-enable-ipv6" => a.enable_ipv6 = v,
                "eci-private-ip-address" => a.private_ip = v,
                "eci-fixed-ip" => a.fixed_ip = v,
                "eci-fixed-ip-retain-hour" => a.fixed_ip_retain_hour = v,
                "eci-gpu-driver-version" => a.gpu_driver_version = v,
                "plain-http-registry" => a.plain_http_registry = v,
                "insecure-registry" => a.insecure_registry = v,
                "acr-instance-ids" => a.acr_instance_ids = v,
                "eci-max-pending-minute" => a.max_pending_minute = v,
                "eci-data-cache-bucket" => a.data_cache_bucket = v,
                "eci-data-cache-pl" => a.data_cache_pl = v,
                "eci-data-cache-provisionedIops" => a.data_cache_iops = v,
                "eci-data-cache-burstingEnabled" => a.data_cache_bursting = v,
                _ => continue,
            }
            if !matches!(
                short,
                "eci-security-group"
                    | "eci-custom-hosts"
                    | "eci-custom-tags"
                    | "eci-custom-dnsconfig"
            ) {
                a.instance_level = true;
            }
        }
        a
    }
}

/// The field path of an annotation, for refusals.
pub fn field(key: &str) -> String {
    format!("metadata.annotations[{key}]")
}

/// `"true"` / `"false"` (any case), refusing anything else.
pub fn parse_bool(value: &str, key: &str) -> Result<bool> {
    // Compared in place, not through a lowercased copy.
    let v = value.trim();
    if v.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if v.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(invalid(
            field(key),
            format!("{value:?} is not \"true\" or \"false\""),
        ))
    }
}

/// A non-negative integer within `range`.
pub fn parse_int(value: &str, key: &str, range: core::ops::RangeInclusive<u64>) -> Result<u64> {
    let n: u64 = value
        .trim()
        .parse()
        .map_err(|_| invalid(field(key), format!("{value:?} is not a whole number")))?;
    if !range.contains(&n) {
        return Err(invalid(
            field(key),
            format!(
                "{n} is outside the allowed range {}..={}",
                range.start(),
                range.end()
            ),
        ));
    }
    Ok(n)
}

/// A Kubernetes-style quantity (`50Gi`, `10M`, `1.5G`, `100`) → its value in the base unit,
/// rounded up. Only the suffixes these annotations use; `.`-fractions allowed.
pub fn parse_quantity(value: &str, key: &str) -> Result<u64> {
    let v = value.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, suffix) = v.split_at(split);
    let mult: u128 = match suffix {
        "" => 1,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => {
            return Err(invalid(
                field(key),
                format!("{value:?} is not a quantity such as 50Gi or 10M"),
            ));
        }
    };
    let bad = || {
        invalid(
            field(key),
            format!("{value:?} is not a quantity such as 50Gi or 10M"),
        )
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() {
        return Err(bad());
    }
    // The digits of `int` and `frac` as one integer (at most 24 digits, so the products below
    // fit in a u128); a second `.` in `frac` is not a digit and refuses the value.
    if int.len() + frac.len() > 24 {
        return Err(bad());
    }
    let mut n: u128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        if !b.is_ascii_digit() {
            return Err(bad());
        }
        n = n * 10 + u128::from(b - b'0');
    }
    let div = 10u128.pow(frac.len() as u32);
    let total = (n * mult).div_ceil(div);
    u64::try_from(total).map_err(|_| bad())
}

/// A comma list, trimmed, empties dropped (the SDK's, shared with placement).
pub use vnode_plugin_sdk::eci::split_list as comma_list;

/// `eci-custom-tags`: `k1:v1,k2:v2` (at most 3).
pub fn custom_tags(value: &str, key: &str) -> Result<Vec<KeyValue>> {
    let mut out = Vec::new();
    for item in list_entries(value) {
        let (k, v) = item.split_once(':').ok_or_else(|| {
            invalid(
                field(key),
                format!("tag {item:?} is not of the form key:value"),
            )
        })?;
        out.push(KeyValue {
            key: k.trim().to_string(),
            value: v.trim().to_string(),
        });
    }
    if out.len() > 3 {
        return Err(invalid(
            field(key),
            format!("{} tags given; ECI allows at most 3 custom tags", out.len()),
        ));
    }
    Ok(out)
}

/// `eci-custom-hosts`: a JSON list of `{"host": "...", "ip": "..."}` entries → /etc/hosts lines.
pub fn custom_hosts(value: &str, key: &str) -> Result<Vec<EciHostAlias>> {
    let parsed: serde_json::Value = serde_json::from_str(value).map_err(|e| {
        invalid(
            field(key),
            format!("not valid JSON ({e}); expected [{{\"host\":\"…\",\"ip\":\"…\"}}]"),
        )
    })?;
    let entries = parsed.as_array().ok_or_else(|| {
        invalid(
            field(key),
            "expected a JSON list of {\"host\":\"…\",\"ip\":\"…\"}",
        )
    })?;
    let mut out: Vec<EciHostAlias> = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let get = |name: &str| {
            e.get(name)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
        };
        let (Some(host), Some(ip)) = (get("host"), get("ip")) else {
            return Err(invalid(
                field(key),
                format!("entry {i} needs non-empty \"host\" and \"ip\" strings"),
            ));
        };
        match out.iter_mut().find(|a| a.ip == ip) {
            Some(alias) => alias.hostnames.push(host.to_string()),
            None => out.push(EciHostAlias {
                ip: ip.to_string(),
                hostnames: vec![host.to_string()],
            }),
        }
    }
    Ok(out)
}

/// `eci-custom-dnsconfig`: JSON `{"nameservers":[…],"searches":[…],"options":[{"name","value"}]}`.
pub fn custom_dns(value: &str, key: &str) -> Result<EciDnsConfig> {
    let parsed: serde_json::Value = serde_json::from_str(value)
        .map_err(|e| invalid(field(key), format!("not valid JSON ({e})")))?;
    let obj = parsed.as_object().ok_or_else(|| {
        invalid(
            field(key),
            "expected a JSON object with nameservers, searches and options",
        )
    })?;
    let strings = |name: &str| -> Result<Vec<String>> {
        match obj.get(name) {
            None => Ok(Vec::new()),
            Some(v) => v
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|s| s.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| {
                    invalid(field(key), format!("\"{name}\" must be a list of strings"))
                }),
        }
    };
    let mut options = Vec::new();
    if let Some(v) = obj.get("options") {
        let list = v
            .as_array()
            .ok_or_else(|| invalid(field(key), "\"options\" must be a list"))?;
        for o in list {
            let name = o
                .get("name")
                .and_then(|n| n.as_str())
                .ok_or_else(|| invalid(field(key), "every option needs a \"name\" string"))?;
            let value = o.get("value").and_then(|n| n.as_str()).map(str::to_string);
            options.push((name.to_string(), value));
        }
    }
    Ok(EciDnsConfig {
        name_servers: strings("nameservers")?,
        searches: strings("searches")?,
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("50Gi", "k").unwrap(), 50 << 30);
        assert_eq!(parse_quantity("10M", "k").unwrap(), 10_000_000);
        assert_eq!(parse_quantity("1.5G", "k").unwrap(), 1_500_000_000);
        assert_eq!(parse_quantity("100", "k").unwrap(), 100);
        assert!(parse_quantity("ten", "k").is_err());
        assert!(parse_quantity("5Qi", "k").is_err());
        assert!(parse_quantity("", "k").is_err());
        // Fractions round up; a second `.`, a bare `.` and more than 24 digits are refused.
        assert_eq!(parse_quantity("1.", "k").unwrap(), 1);
        assert_eq!(parse_quantity(".5Ki", "k").unwrap(), 512);
        assert_eq!(parse_quantity("0.0001k", "k").unwrap(), 1);
        assert_eq!(parse_quantity(" 1.5Gi ", "k").unwrap(), 3 << 29);
        assert_eq!(
            parse_quantity("000000000000000000000001", "k").unwrap(),
            1,
            "24 digits"
        );
        for bad in [
            ".",
            "..",
            "1.2.3",
            "1..2",
            "0000000000000000000000001",
            "99999999999T",
        ] {
            assert!(parse_quantity(bad, "k").is_err(), "{bad:?} accepted");
        }
        let err = parse_quantity("1.2.3Gi", "k8s.aliyun.com/x").unwrap_err();
        assert_refused_as(
            err,
            "metadata.annotations[k8s.aliyun.com/x]",
            "\"1.2.3Gi\" is not a quantity such as 50Gi or 10M",
        );
    }

    /// `err` is the refusal `invalid(field, message)` would build.
    fn assert_refused_as<E: core::fmt::Debug>(err: E, field: &str, message: &str) {
        assert_eq!(format!("{err:?}"), format!("{:?}", invalid(field, message)));
    }

    #[test]
    fn bools_ignore_case_and_name_the_annotation() {
        assert!(parse_bool(" TRUE ", "k").unwrap());
        assert!(!parse_bool("False", "k").unwrap());
        let err = parse_bool("yes", "k8s.aliyun.com/x").unwrap_err();
        assert_refused_as(
            err,
            "metadata.annotations[k8s.aliyun.com/x]",
            "\"yes\" is not \"true\" or \"false\"",
        );
    }

    #[test]
    fn tags_and_hosts() {
        let t = custom_tags("team:web, env:prod", "k").unwrap();
        assert_eq!((t[1].key.as_str(), t[1].value.as_str()), ("env", "prod"));
        assert!(custom_tags("a:1,b:2,c:3,d:4", "k").is_err());
        assert!(custom_tags("novalue", "k").is_err());
        let h = custom_hosts(
            r#"[{"host":"a.example","ip":"10.0.0.1"},{"host":"b.example","ip":"10.0.0.1"}]"#,
            "k",
        )
        .unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].hostnames, vec!["a.example", "b.example"]);
        assert!(custom_hosts("{}", "k").is_err());
        assert!(custom_hosts("[{\"host\":\"a\"}]", "k").is_err());
    }

    #[test]
    fn dns() {
        let d = custom_dns(r#"{"nameservers":["1.1.1.1"],"searches":["x.local"],"options":[{"name":"ndots","value":"2"},{"name":"rotate"}]}"#, "k").unwrap();
        assert_eq!(d.name_servers, vec!["1.1.1.1"]);
        assert_eq!(
            d.options,
            vec![
                ("ndots".to_string(), Some("2".to_string())),
                ("rotate".to_string(), None)
            ]
        );
        assert!(custom_dns("[1]", "k").is_err());
    }

    #[test]
    fn instance_level_is_set_by_the_instance_annotations_only() {
        let kv = |k: &str| KeyValue {
            key: k.into(),
            value: "x".into(),
        };
        let request_level = [
            kv("k8s.aliyun.com/eci-security-group"),
            kv("k8s.aliyun.com/eci-custom-hosts"),
            kv("k8s.aliyun.com/eci-custom-tags"),
            kv("k8s.aliyun.com/eci-custom-dnsconfig"),
            kv("k8s.aliyun.com/eci-use-specs"),
            kv("k8s.aliyun.com/eci-unknown"),
            kv("kubernetes.io/other"),
            kv("app"),
        ];
        assert!(!Annotations::read(&request_level).instance_level);
        for key in [
            "k8s.aliyun.com/eci-ram-role-name",
            "k8s.aliyun.com/eci-image-snapshot-id",
            "k8s.aliyun.com/eip-bandwidth",
            "k8s.aliyun.com/eci-data-cache-burstingEnabled",
            "kubernetes.io/ingress-bandwidth",
            "kubernetes.io/egress-bandwidth",
        ] {
            let mut all = request_level.to_vec();
            all.push(kv(key));
            assert!(Annotations::read(&all).instance_level, "{key}");
        }
    }

    #[test]
    fn read_picks_known_keys_only() {
        let kv = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: v.into(),
        };
        let all = vec![
            kv("k8s.aliyun.com/eci-ram-role-name", "role"),
            kv("k8s.aliyun.com/eci-unknown", "x"),
            kv("kubernetes.io/egress-bandwidth", "10M"),
            kv("k8s.aliyun.com/eci-image-snapshot-id", "imc-old"),
            kv("k8s.aliyun.com/eci-imc-id", "imc-new"),
        ];
        let a = Annotations::read(&all);
        assert!(a.instance_level);
        assert_eq!(a.ram_role, Some("role"));
        assert_eq!(a.egress_bandwidth, Some("10M"));
        assert_eq!(
            a.imc_id,
            Some("imc-new"),
            "the current name wins over the older one"
        );
    }
}
