//! The emulator's state and the semantics of each action.

use std::collections::{BTreeMap, HashMap};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use vnode_eci::model::*;
use vnode_eci::wire::{self, params::from_params};

use crate::api::ApiError;
use crate::profile::{Profile, resolve_behaviour};
use crate::sim::{
    ContainerView, Group, GroupView, Override, RecordedEvent, SimContainer, Transition,
    attempt_logs,
};
use crate::spec;

/// Parameters every request may carry that are not business parameters (excluded from
/// ClientToken fingerprints).
const COMMON_PARAMS: &[&str] = &[
    "Action",
    "Version",
    "Format",
    "AccessKeyId",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "SignatureType",
    "Signature",
    "Timestamp",
    "SecurityToken",
    "OwnerId",
    "OwnerAccount",
    "ResourceOwnerId",
    "ResourceOwnerAccount",
];

/// What a remembered ClientToken maps to.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TokenRecord {
    fingerprint: String,
    /// For creates: the group made.
    group_id: String,
}

/// Everything the emulator remembers (and persists with `--state`).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct World {
    groups: BTreeMap<u64, Group>,
    by_id: HashMap<String, u64>,
    tokens: HashMap<String, TokenRecord>,
    next_seq: u64,
    next_ip: u32,
    #[serde(skip)]
    last_sweep: Option<Timestamp>,
    /// Bumped by every change to the groups (insertion, removal, any [`World::get_mut`]),
    /// so a kept `TotalCount` knows whether it still holds.
    #[serde(skip)]
    generation: u64,
    /// `TotalCount`s of listings whose filter does not depend on the time, by filter (see
    /// [`World::listing`]).
    #[serde(skip)]
    total_counts: HashMap<String, KeptCount>,
}

/// A listing's `TotalCount` as counted at `generation`; it holds until the groups change
/// or `valid_until`, the first moment one of the counted groups is gone.
#[derive(Debug)]
struct KeptCount {
    generation: u64,
    valid_until: Option<Timestamp>,
    total: usize,
}

/// At most this many filters keep a count (a client cycling through filters must not grow
/// the emulator's memory); when full, all are dropped.
const KEPT_COUNTS: usize = 64;

/// A listing's `NextToken`: [`World::listing`] returns up to `limit` + 1 groups, and the one
/// beyond the page (removed here) is where the next page starts. Empty on the last page.
fn next_page_token(page: &mut Vec<u64>, limit: usize) -> String {
    if page.len() > limit {
        page.pop().map(|s| format!("{s:x}")).unwrap_or_default()
    } else {
        String::new()
    }
}

/// The business parameters of a request, sorted, for fingerprints.
fn fingerprint(params: &[(String, String)]) -> String {
    let business: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| !COMMON_PARAMS.contains(&k.as_str()))
        .cloned()
        .collect();
    wire::sign::sha256_hex(wire::canonical_query(&business).as_bytes())
}

fn ts(t: Timestamp) -> String {
    wire::format_timestamp(t)
}

fn opt_ts(t: Option<Timestamp>) -> String {
    t.map(ts).unwrap_or_default()
}

fn new_group_id(region: &str) -> String {
    use rand::Rng;
    let prefix = match region {
        "cn-hangzhou" => "bp1",
        "cn-shanghai" => "uf6",
        "cn-beijing" => "2ze",
        _ => "gw8",
    };
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let tail: String = (0..17)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("eci-{prefix}{tail}")
}

fn require(value: &str, param: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        Err(ApiError::missing(param))
    } else {
        Ok(())
    }
}

fn region_of(params: &[(String, String)], profile: &Profile) -> Result<(), ApiError> {
    let region = params
        .iter()
        .find(|(k, _)| k == "RegionId")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    if region.is_empty() {
        return Err(ApiError::missing("RegionId"));
    }
    if region != profile.region_id {
        return Err(ApiError::new(
            400,
            "InvalidRegionId",
            format!(
                "The specified region \"{region}\" does not exist or is not served by this endpoint."
            ),
        ));
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    (2..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn valid_container_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn validate_containers(
    list: &[Container],
    prefix: &str,
    volumes: &[Volume],
    names: &mut Vec<String>,
) -> Result<(), ApiError> {
    if list.len() > spec::MAX_CONTAINERS {
        return Err(ApiError::invalid(
            prefix,
            format!("at most {} containers are allowed", spec::MAX_CONTAINERS),
        ));
    }
    for (i, c) in list.iter().enumerate() {
        let p = format!("{prefix}.{}", i + 1);
        require(&c.name, &format!("{p}.Name"))?;
        require(&c.image, &format!("{p}.Image"))?;
        if !valid_container_name(&c.name) {
            return Err(ApiError::invalid(
                &format!("{p}.Name"),
                "must be a DNS-1123 label",
            ));
        }
        if names.contains(&c.name) {
            return Err(ApiError::invalid(
                &format!("{p}.Name"),
                format!("duplicate container name {:?}", c.name),
            ));
        }
        names.push(c.name.clone());
        for (field, v) in [("Cpu", c.cpu), ("Memory", c.memory)] {
            if let Some(v) = v
                && !(0.0..=1024.0).contains(&v)
            {
                return Err(ApiError::invalid(&format!("{p}.{field}"), "out of range"));
            }
        }
        if c.args.len() > 10 {
            return Err(ApiError::invalid(
                &format!("{p}.Arg"),
                "at most 10 arguments are allowed",
            ));
        }
        for (j, e) in c.env.iter().enumerate() {
            let ep = format!("{p}.EnvironmentVar.{}", j + 1);
            require(&e.key, &format!("{ep}.Key"))?;
            let key_ok = e.key.len() <= 128
                && !e.key.starts_with(|ch: char| ch.is_ascii_digit())
                && e.key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
            if !key_ok {
                return Err(ApiError::invalid(
                    &format!("{ep}.Key"),
                    "must be 1-128 letters, digits or _",
                ));
            }
            if e.value.as_ref().is_some_and(|v| v.len() > 256 * 1024) {
                return Err(ApiError::invalid(&format!("{ep}.Value"), "too long"));
            }
            if let Some(f) = &e.field_ref
                && f.field_path != "status.podIP"
            {
                return Err(ApiError::invalid(
                    &format!("{ep}.FieldRef.FieldPath"),
                    "only status.podIP is supported",
                ));
            }
        }
        for (j, port) in c.ports.iter().enumerate() {
            if !(1..=65535).contains(&port.port) {
                return Err(ApiError::invalid(
                    &format!("{p}.Port.{}.Port", j + 1),
                    "must be 1-65535",
                ));
            }
            if let Some(proto) = &port.protocol
                && !matches!(proto.to_ascii_uppercase().as_str(), "TCP" | "UDP")
            {
                return Err(ApiError::invalid(
                    &format!("{p}.Port.{}.Protocol", j + 1),
                    "must be TCP or UDP",
                ));
            }
        }
        for (j, m) in c.volume_mounts.iter().enumerate() {
            let mp = format!("{p}.VolumeMount.{}", j + 1);
            require(&m.name, &format!("{mp}.Name"))?;
            require(&m.mount_path, &format!("{mp}.MountPath"))?;
            if !volumes.iter().any(|v| v.name == m.name) {
                return Err(ApiError::invalid(
                    &format!("{mp}.Name"),
                    format!("no volume named {:?}", m.name),
                ));
            }
        }
    }
    Ok(())
}

fn validate_volumes(volumes: &[Volume]) -> Result<(), ApiError> {
    if volumes.len() > spec::MAX_VOLUMES {
        return Err(ApiError::invalid(
            "Volume",
            format!("at most {} volumes are allowed", spec::MAX_VOLUMES),
        ));
    }
    for (i, v) in volumes.iter().enumerate() {
        let p = format!("Volume.{}", i + 1);
        require(&v.name, &format!("{p}.Name"))?;
        let Some(kind) = v.kind else {
            return Err(ApiError::missing(&format!("{p}.Type")));
        };
        match kind {
            VolumeType::NfsVolume => {
                let nfs = v
                    .nfs_volume
                    .as_ref()
                    .ok_or_else(|| ApiError::missing(&format!("{p}.NFSVolume.Server")))?;
                require(&nfs.server, &format!("{p}.NFSVolume.Server"))?;
                require(&nfs.path, &format!("{p}.NFSVolume.Path"))?;
            }
            VolumeType::ConfigFileVolume => {
                let cf = v.config_file_volume.as_ref();
                for (j, f) in cf
                    .map(|c| c.files.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .enumerate()
                {
                    let fp = format!("{p}.ConfigFileVolume.ConfigFileToPath.{}", j + 1);
                    require(&f.path, &format!("{fp}.Path"))?;
                    if f.content.len() > 32 * 1024 {
                        return Err(ApiError::invalid(
                            &format!("{fp}.Content"),
                            "content exceeds 32 KB",
                        ));
                    }
                }
            }
            VolumeType::FlexVolume => {
                let fv = v
                    .flex_volume
                    .as_ref()
                    .ok_or_else(|| ApiError::missing(&format!("{p}.FlexVolume.Driver")))?;
                require(&fv.driver, &format!("{p}.FlexVolume.Driver"))?;
            }
            VolumeType::DiskVolume => {
                let d = v
                    .disk_volume
                    .as_ref()
                    .ok_or_else(|| ApiError::missing(&format!("{p}.DiskVolume.DiskId")))?;
                require(&d.disk_id, &format!("{p}.DiskVolume.DiskId"))?;
            }
            VolumeType::HostPathVolume => {
                let h = v
                    .host_path_volume
                    .as_ref()
                    .ok_or_else(|| ApiError::missing(&format!("{p}.HostPathVolume.Path")))?;
                require(&h.path, &format!("{p}.HostPathVolume.Path"))?;
            }
            VolumeType::EmptyDirVolume => {}
        }
    }
    Ok(())
}

fn validate_tags(tags: &[Tag]) -> Result<(), ApiError> {
    if tags.len() > spec::MAX_TAGS {
        return Err(ApiError::invalid(
            "Tag",
            format!("at most {} tags are allowed", spec::MAX_TAGS),
        ));
    }
    for (i, t) in tags.iter().enumerate() {
        let p = format!("Tag.{}", i + 1);
        require(&t.key, &format!("{p}.Key"))?;
        if t.key.len() > 64
            || t.key.starts_with("acs:")
            || t.key.starts_with("aliyun")
            || t.key.contains("://")
        {
            return Err(ApiError::invalid(
                &format!("{p}.Key"),
                "key must be ≤64 chars, not acs:/aliyun-prefixed",
            ));
        }
        if t.value.len() > 128 {
            return Err(ApiError::invalid(
                &format!("{p}.Value"),
                "value must be ≤128 chars",
            ));
        }
    }
    Ok(())
}

fn validate_token(token: &Option<String>) -> Result<(), ApiError> {
    if let Some(t) = token
        && (t.len() > 64 || !t.is_ascii())
    {
        return Err(ApiError::invalid(
            "ClientToken",
            "must be at most 64 ASCII characters",
        ));
    }
    Ok(())
}

/// Effective (cpu, memory) of a spec, rounded up; error if oversized.
fn effective_spec(req: &CreateContainerGroupRequest) -> Result<(f64, f64), ApiError> {
    // Init containers run before the containers, so the instance is sized by the
    // containers' sum (or the instance-level Cpu/Memory when given).
    let containers_cpu: Option<f64> = {
        let v: Vec<f64> = req.containers.iter().filter_map(|c| c.cpu).collect();
        (!v.is_empty()).then(|| v.iter().sum())
    };
    let containers_mem: Option<f64> = {
        let v: Vec<f64> = req.containers.iter().filter_map(|c| c.memory).collect();
        (!v.is_empty()).then(|| v.iter().sum())
    };
    let (cpu, mem) = match (req.cpu.or(containers_cpu), req.memory.or(containers_mem)) {
        (None, None) => (2.0, 4.0),
        (Some(c), None) => (c, c * 2.0),
        (None, Some(m)) => ((m / 2.0).max(0.25), m),
        (Some(c), Some(m)) => (c, m),
    };
    if cpu <= 0.0 || mem <= 0.0 {
        return Err(ApiError::invalid("Cpu", "cpu and memory must be positive"));
    }
    if cpu > spec::MAX_CPU {
        return Err(ApiError::new(
            400,
            "InvalidParameter.CpuMemory",
            format!(
                "The requested spec {} exceeds the maximum of {} vCPU per instance.",
                spec::spec_name(cpu, mem),
                spec::MAX_CPU
            ),
        ));
    }
    spec::round_up(cpu, mem).ok_or_else(|| {
        ApiError::new(
            400,
            "InvalidParameter.CpuMemory",
            format!(
                "No supported instance spec covers {}.",
                spec::spec_name(cpu, mem)
            ),
        )
    })
}

/// Zone a vSwitch belongs to: `vsw-…-<letter>` names the zone suffix; others hash.
fn zone_of_vswitch(vsw: &str, zones: &[String]) -> String {
    if let Some(suffix) = vsw.rsplit('-').next()
        && suffix.len() == 1
        && let Some(z) = zones.iter().find(|z| z.ends_with(&format!("-{suffix}")))
    {
        return z.clone();
    }
    let h = vsw.bytes().fold(0usize, |acc, b| {
        acc.wrapping_mul(31).wrapping_add(b as usize)
    });
    zones[h % zones.len()].clone()
}

/// A successful answer, serialised after the world lock is released.
pub enum Reply {
    /// A small body built as JSON.
    Value(serde_json::Value),
    /// `DescribeContainerGroups`, serialised straight from the typed response.
    Groups(DescribeContainerGroupsResponse),
    /// `DescribeContainerGroupStatus`.
    Status(DescribeContainerGroupStatusResponse),
}

impl Reply {
    /// The JSON body with `RequestId` set.
    pub fn into_body(self, request_id: &str) -> Vec<u8> {
        let body = match self {
            Reply::Value(mut v) => {
                if let Some(obj) = v.as_object_mut() {
                    obj.insert(
                        "RequestId".into(),
                        serde_json::Value::String(request_id.into()),
                    );
                }
                serde_json::to_vec(&v)
            }
            Reply::Groups(mut r) => {
                r.request_id = request_id.into();
                serde_json::to_vec(&r)
            }
            Reply::Status(mut r) => {
                r.request_id = request_id.into();
                serde_json::to_vec(&r)
            }
        };
        // Serialising these plain structs cannot fail; an empty body would still carry the
        // status and x-acs-request-id.
        body.unwrap_or_default()
    }
}

/// Parsed request + its fingerprint.
pub struct Ctx<'a> {
    /// All parameters (query ∪ form).
    pub params: &'a [(String, String)],
    /// Host the request was sent to (for `WebSocketUri`).
    pub host: &'a str,
    /// Scheme the request came in on (`http`).
    pub scheme: &'a str,
}

impl World {
    /// Removes groups whose deletion finished (at most once a second).
    fn sweep(&mut self, now: Timestamp) {
        if self
            .last_sweep
            .is_some_and(|t| now.duration_since(t) < SignedDuration::from_secs(1))
        {
            return;
        }
        self.last_sweep = Some(now);
        let gone: Vec<u64> = self
            .groups
            .iter()
            .filter(|(_, g)| g.is_gone(now))
            .map(|(s, _)| *s)
            .collect();
        for seq in gone {
            self.generation += 1;
            if let Some(g) = self.groups.remove(&seq) {
                self.by_id.remove(&g.id);
            }
        }
    }

    /// The group with this id, gone or not (for call recording).
    pub fn group_by_id(&self, id: &str) -> Option<&Group> {
        self.by_id.get(id).and_then(|s| self.groups.get(s))
    }

    fn get(&self, id: &str, now: Timestamp) -> Result<&Group, ApiError> {
        self.by_id
            .get(id)
            .and_then(|s| self.groups.get(s))
            .filter(|g| !g.is_gone(now))
            .ok_or_else(|| ApiError::group_not_found(id))
    }

    fn get_mut(&mut self, id: &str, now: Timestamp) -> Result<&mut Group, ApiError> {
        // The caller may change anything a listing filters on.
        self.generation += 1;
        let seq = *self
            .by_id
            .get(id)
            .ok_or_else(|| ApiError::group_not_found(id))?;
        self.groups
            .get_mut(&seq)
            .filter(|g| !g.is_gone(now))
            .ok_or_else(|| ApiError::group_not_found(id))
    }

    /// Checks a ClientToken: `Ok(Some(record))` to replay, `Ok(None)` if new.
    fn check_token(
        &self,
        action: &str,
        token: &Option<String>,
        fp: &str,
    ) -> Result<Option<TokenRecord>, ApiError> {
        let Some(token) = token.as_deref().filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        match self.tokens.get(&format!("{action}/{token}")) {
            None => Ok(None),
            Some(r) if r.fingerprint == fp => Ok(Some(r.clone())),
            Some(_) => Err(ApiError::new(
                400,
                "IdempotentParameterMismatch",
                "Request uses a client token in a previous request but is not identical to that request.",
            )),
        }
    }

    fn remember_token(&mut self, action: &str, token: &Option<String>, fp: String, group_id: &str) {
        if let Some(token) = token.as_deref().filter(|t| !t.is_empty()) {
            self.tokens.insert(
                format!("{action}/{token}"),
                TokenRecord {
                    fingerprint: fp,
                    group_id: group_id.into(),
                },
            );
        }
    }

    /// `CreateContainerGroup`, second half (under the world lock): ClientToken replay or
    /// insertion of the prepared group with a fresh id and IP.
    pub fn commit_create(
        &mut self,
        prepared: PreparedCreate,
        profile: &Profile,
    ) -> Result<serde_json::Value, ApiError> {
        let PreparedCreate {
            token,
            fingerprint: fp,
            group,
        } = prepared;
        if let Some(prev) = self.check_token("CreateContainerGroup", &token, &fp)? {
            return Ok(serde_json::json!({ "ContainerGroupId": prev.group_id }));
        }
        let mut group = group?;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.next_ip = self.next_ip.wrapping_add(1);
        group.ip = format!(
            "192.168.{}.{}",
            (self.next_ip / 250) % 250,
            self.next_ip % 250 + 2
        );
        let mut id = new_group_id(&profile.region_id);
        while self.by_id.contains_key(&id) {
            id = new_group_id(&profile.region_id);
        }
        group.seq = seq;
        group.id = id.clone();
        self.remember_token("CreateContainerGroup", &token, fp, &id);
        self.by_id.insert(id.clone(), seq);
        self.groups.insert(seq, group);
        self.generation += 1;
        Ok(serde_json::json!({ "ContainerGroupId": id }))
    }
    fn filtered<'a>(
        &'a self,
        now: Timestamp,
        ids: &'a [String],
        tags: &'a [Tag],
        pred: impl Fn(&Group) -> bool + 'a,
        start_after: Option<u64>,
    ) -> impl Iterator<Item = &'a Group> + 'a {
        // By ids: look them up instead of scanning every group.
        let by_ids: Option<Vec<u64>> = (!ids.is_empty()).then(|| {
            let mut seqs: Vec<u64> = ids
                .iter()
                .filter_map(|id| self.by_id.get(id).copied())
                .filter(|s| start_after.is_none_or(|a| *s >= a))
                .collect();
            seqs.sort_unstable();
            seqs.dedup();
            seqs
        });
        let scan = by_ids.is_none().then(|| {
            self.groups
                .range(start_after.unwrap_or(0)..)
                .map(|(_, g)| g)
        });
        let picked = by_ids
            .into_iter()
            .flatten()
            .filter_map(|s| self.groups.get(&s));
        picked.chain(scan.into_iter().flatten()).filter(move |g| {
            !g.is_gone(now)
                && tags.iter().all(|t| {
                    g.spec
                        .tags
                        .iter()
                        .any(|gt| gt.key == t.key && gt.value == t.value)
                })
                && pred(g)
        })
    }

    /// One page of a listing and its `TotalCount` (every group matching the filter, not
    /// only those from `start_after` on): the sequence numbers of up to `limit` + 1
    /// matching groups from `start_after` on (one more than a page, to know whether a next
    /// page exists) and the total.
    ///
    /// Counting scans every group, and a paged listing asks on every page (N²/20 group
    /// checks to list N groups 20 at a time). So when the filter does not depend on the
    /// time (`count_key` is `Some`: no status or `SinceSecond` filter, no ids), the count
    /// is kept for the next pages until a group changes or a counted group's deletion
    /// completes. Otherwise the count and the page come from one scan.
    #[allow(clippy::too_many_arguments)]
    fn listing(
        &mut self,
        now: Timestamp,
        ids: &[String],
        tags: &[Tag],
        pred: impl Fn(&Group) -> bool,
        start_after: Option<u64>,
        limit: usize,
        count_key: Option<String>,
    ) -> (usize, Vec<u64>) {
        let kept = count_key
            .as_ref()
            .and_then(|k| self.total_counts.get(k))
            .filter(|c| c.generation == self.generation && c.valid_until.is_none_or(|t| now < t))
            .map(|c| c.total);
        if let Some(total) = kept {
            let page = self
                .filtered(now, ids, tags, &pred, start_after)
                .take(limit + 1)
                .map(|g| g.seq)
                .collect();
            return (total, page);
        }
        let mut total = 0;
        let mut valid_until: Option<Timestamp> = None;
        let mut page = Vec::new();
        for g in self.filtered(now, ids, tags, &pred, None) {
            total += 1;
            // Not gone yet, so its deletion (if any) completes after `now`.
            if let Some(t) = g.delete_at {
                valid_until = Some(valid_until.map_or(t, |v| v.min(t)));
            }
            if page.len() <= limit && start_after.is_none_or(|a| g.seq >= a) {
                page.push(g.seq);
            }
        }
        if let Some(key) = count_key {
            if self.total_counts.len() >= KEPT_COUNTS {
                self.total_counts.clear();
            }
            let count = KeptCount {
                generation: self.generation,
                valid_until,
                total,
            };
            self.total_counts.insert(key, count);
        }
        (total, page)
    }

    /// `DescribeContainerGroups`.
    pub fn describe(
        &mut self,
        ctx: &Ctx<'_>,
        profile: &Profile,
    ) -> Result<DescribeContainerGroupsResponse, ApiError> {
        region_of(ctx.params, profile)?;
        let req: DescribeContainerGroupsRequest = from_params(ctx.params)?;
        if req.container_group_ids.len() > 20 {
            return Err(ApiError::invalid(
                "ContainerGroupIds",
                "at most 20 ids are allowed",
            ));
        }
        let limit = req.limit.unwrap_or(20);
        if !(1..=20).contains(&limit) {
            return Err(ApiError::invalid("Limit", "must be between 1 and 20"));
        }
        let start = parse_token(&req.next_token)?;
        let now = Timestamp::now();
        self.sweep(now);
        let timing = &profile.timing;
        let status_filter = req.status.clone();
        let pred = |g: &Group| {
            req.container_group_name
                .as_ref()
                .is_none_or(|n| *n == g.spec.container_group_name)
                && req.zone_id.as_ref().is_none_or(|z| *z == g.zone)
                && req.vswitch_id.as_ref().is_none_or(|v| *v == g.vswitch)
                && req
                    .security_group_id
                    .as_ref()
                    .is_none_or(|s| *s == g.security_group)
                && req
                    .resource_group_id
                    .as_ref()
                    .is_none_or(|r| g.spec.resource_group_id.as_ref() == Some(r))
                && status_filter
                    .as_ref()
                    .is_none_or(|s| g.view(now, timing).status.as_str() == s)
        };
        let count_key =
            (req.container_group_ids.is_empty() && status_filter.is_none()).then(|| {
                format!(
                    "DescribeContainerGroups {:?}",
                    (
                        &req.tags,
                        &req.container_group_name,
                        &req.zone_id,
                        &req.vswitch_id,
                        &req.security_group_id,
                        &req.resource_group_id
                    )
                )
            });
        let (total, mut page) = self.listing(
            now,
            &req.container_group_ids,
            &req.tags,
            pred,
            start,
            limit as usize,
            count_key,
        );
        let next_token = next_page_token(&mut page, limit as usize);
        let page: Vec<&Group> = page.iter().filter_map(|s| self.groups.get(s)).collect();
        let with_event = req.with_event.unwrap_or(true);
        let groups: Vec<ContainerGroup> = page
            .iter()
            .map(|g| describe_group(g, now, profile, with_event))
            .collect();
        Ok(DescribeContainerGroupsResponse {
            request_id: String::new(),
            total_count: total as i64,
            next_token,
            container_groups: groups,
        })
    }

    /// `DescribeContainerGroupStatus`.
    pub fn status(
        &mut self,
        ctx: &Ctx<'_>,
        profile: &Profile,
    ) -> Result<DescribeContainerGroupStatusResponse, ApiError> {
        region_of(ctx.params, profile)?;
        let req: DescribeContainerGroupStatusRequest = from_params(ctx.params)?;
        if req.container_group_ids.len() > 20 {
            return Err(ApiError::invalid(
                "ContainerGroupIds",
                "at most 20 ids are allowed",
            ));
        }
        let limit = req.limit.unwrap_or(200);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::invalid("Limit", "must be between 1 and 1000"));
        }
        if req.since_second.is_some_and(|s| s < 0) {
            return Err(ApiError::invalid("SinceSecond", "must not be negative"));
        }
        let start = parse_token(&req.next_token)?;
        let now = Timestamp::now();
        self.sweep(now);
        let timing = &profile.timing;
        let since = req.since_second.map(|s| now - SignedDuration::from_secs(s));
        let pred = |g: &Group| {
            req.zone_id.as_ref().is_none_or(|z| *z == g.zone)
                && req.vswitch_id.as_ref().is_none_or(|v| *v == g.vswitch)
                && req
                    .resource_group_id
                    .as_ref()
                    .is_none_or(|r| g.spec.resource_group_id.as_ref() == Some(r))
                && since.is_none_or(|s| g.view(now, timing).changed_at >= s)
        };
        let count_key = (req.container_group_ids.is_empty() && since.is_none()).then(|| {
            format!(
                "DescribeContainerGroupStatus {:?}",
                (
                    &req.tags,
                    &req.zone_id,
                    &req.vswitch_id,
                    &req.resource_group_id
                )
            )
        });
        let (total, mut page) = self.listing(
            now,
            &req.container_group_ids,
            &req.tags,
            pred,
            start,
            limit as usize,
            count_key,
        );
        let next_token = next_page_token(&mut page, limit as usize);
        let page: Vec<&Group> = page.iter().filter_map(|s| self.groups.get(s)).collect();
        let data: Vec<ContainerGroupStatusInfo> =
            page.iter().map(|g| status_info(g, now, profile)).collect();
        Ok(DescribeContainerGroupStatusResponse {
            request_id: String::new(),
            total_count: total as i64,
            next_token,
            data,
        })
    }

    /// `DeleteContainerGroup`.
    pub fn delete(
        &mut self,
        ctx: &Ctx<'_>,
        profile: &Profile,
    ) -> Result<serde_json::Value, ApiError> {
        region_of(ctx.params, profile)?;
        let req: DeleteContainerGroupRequest = from_params(ctx.params)?;
        require(&req.container_group_id, "ContainerGroupId")?;
        validate_token(&req.client_token)?;
        let fp = fingerprint(ctx.params);
        if self
            .check_token("DeleteContainerGroup", &req.client_token, &fp)?
            .is_some()
        {
            return Ok(serde_json::json!({}));
        }
        let now = Timestamp::now();
        let timing = profile.timing.clone();
        let g = self.get_mut(&req.container_group_id, now)?;
        let view = g.view(now, &timing);
        if view.status == ContainerGroupStatus::Terminating {
            return Err(ApiError::new(
                400,
                "OperationConflict",
                "Request was denied due to conflict with a previous request.",
            ));
        }
        let graceful = req.force != Some(true)
            && !timing.instant
            && matches!(
                view.status,
                ContainerGroupStatus::Running | ContainerGroupStatus::Pending
            )
            && g.spec.containers.iter().any(Container::has_pre_stop);
        if graceful {
            let grace = g
                .spec
                .termination_grace_period_seconds
                .map(|s| s * 1000)
                .unwrap_or(i64::MAX);
            let until =
                now + SignedDuration::from_millis((timing.terminating_ms as i64).min(grace.max(0)));
            g.transition = Some(Transition {
                status: "Terminating".into(),
                from: now,
                until,
            });
            g.delete_at = Some(until);
            g.events.push(RecordedEvent {
                at: now,
                kind: "Normal".into(),
                reason: "Killing".into(),
                message: "Stopping containers (running preStop hooks)".into(),
            });
        } else {
            g.delete_at = Some(now);
        }
        let id = g.id.clone();
        self.remember_token("DeleteContainerGroup", &req.client_token, fp, &id);
        Ok(serde_json::json!({}))
    }

    /// `RestartContainerGroup`.
    pub fn restart(
        &mut self,
        ctx: &Ctx<'_>,
        profile: &Profile,
    ) -> Result<serde_json::Value, ApiError> {
        region_of(ctx.params, profile)?;
        let req: RestartContainerGroupRequest = from_params(ctx.params)?;
        require(&req.container_group_id, "ContainerGroupId")?;
        validate_token(&req.client_token)?;
        let fp = fingerprint(ctx.params);
        if self
            .check_token("RestartContainerGroup", &req.client_token, &fp)?
            .is_some()
        {
            return Ok(serde_json::json!({}));
        }
        let now = Timestamp::now();
        let timing = profile.timing.clone();
        let g = self.get_mut(&req.container_group_id, now)?;
        let view = g.view(now, &timing);
        if !matches!(
            view.status,
            ContainerGroupStatus::Running | ContainerGroupStatus::Pending
        ) {
            return Err(ApiError::incorrect_status(&g.id, view.status.as_str()));
        }
        let dur = if timing.instant {
            0
        } else {
            timing.restarting_ms as i64
        };
        let until = now + SignedDuration::from_millis(dur);
        for (c, v) in g.containers.iter_mut().zip(view.containers.iter()) {
            c.restart_base = v.restart_count + 1;
        }
        g.transition = Some(Transition {
            status: "Restarting".into(),
            from: now,
            until,
        });
        g.run_epoch = until;
        g.events.push(RecordedEvent {
            at: now,
            kind: "Normal".into(),
            reason: "Restarting".into(),
            message: "Container group is restarting".into(),
        });
        let id = g.id.clone();
        self.remember_token("RestartContainerGroup", &req.client_token, fp, &id);
        Ok(serde_json::json!({}))
    }

    /// `UpdateContainerGroup`.
    pub fn update(
        &mut self,
        ctx: &Ctx<'_>,
        profile: &Profile,
    ) -> Result<serde_json::Value, ApiError> {
        region_of(ctx.params, profile)?;
        let req: UpdateContainerGroupRequest = from_params(ctx.params)?;
        require(&req.container_group_id, "ContainerGroupId")?;
        validate_token(&req.client_token)?;
        let fp = fingerprint(ctx.params);
        if self
            .check_token("UpdateContainerGroup", &req.client_token, &fp)?
            .is_some()
        {
            return Ok(serde_json::json!({}));
        }
        let incremental = match req.update_type.as_deref() {
            None | Some("RenewUpdate") => false,
            Some("IncrementalUpdate") => true,
            Some(_) => return Err(ApiError::invalid_value("UpdateType")),
        };
        let now = Timestamp::now();
        let timing = profile.timing.clone();
        let g = self.get_mut(&req.container_group_id, now)?;
        let view = g.view(now, &timing);
        if !matches!(
            view.status,
            ContainerGroupStatus::Running | ContainerGroupStatus::Pending
        ) {
            return Err(ApiError::incorrect_status(&g.id, view.status.as_str()));
        }
        let mut spec = g.spec.clone();
        if let Some(p) = req.restart_policy {
            spec.restart_policy = Some(p);
        }
        if req.cpu.is_some() {
            spec.cpu = req.cpu;
        }
        if req.memory.is_some() {
            spec.memory = req.memory;
        }
        if !req.tags.is_empty() {
            spec.tags = req.tags.clone();
        }
        if !req.volumes.is_empty() {
            spec.volumes = req.volumes.clone();
        }
        if !req.containers.is_empty() {
            if incremental {
                for c in &req.containers {
                    match spec.containers.iter_mut().find(|x| x.name == c.name) {
                        Some(existing) => {
                            if !c.image.is_empty() {
                                existing.image = c.image.clone();
                            }
                            if c.cpu.is_some() {
                                existing.cpu = c.cpu;
                            }
                            if c.memory.is_some() {
                                existing.memory = c.memory;
                            }
                            if !c.command.is_empty() {
                                existing.command = c.command.clone();
                            }
                            if !c.args.is_empty() {
                                existing.args = c.args.clone();
                            }
                            if !c.env.is_empty() {
                                existing.env = c.env.clone();
                            }
                        }
                        None => {
                            return Err(ApiError::invalid(
                                "Container.Name",
                                format!("no container named {:?}", c.name),
                            ));
                        }
                    }
                }
            } else {
                spec.containers = req.containers.clone();
            }
        }
        if !req.init_containers.is_empty() {
            spec.init_containers = req.init_containers.clone();
        }
        if !req.image_registry_credentials.is_empty() {
            spec.image_registry_credentials = req.image_registry_credentials.clone();
        }
        if req.dns_config.is_some() {
            spec.dns_config = req.dns_config.clone();
        }
        if req.resource_group_id.is_some() {
            spec.resource_group_id = req.resource_group_id.clone();
        }
        validate_volumes(&spec.volumes)?;
        let mut names = Vec::new();
        validate_containers(&spec.containers, "Container", &spec.volumes, &mut names)?;
        validate_tags(&spec.tags)?;
        let (cpu, memory) = effective_spec(&spec)?;
        let dur = if timing.instant {
            0
        } else {
            timing.updating_ms as i64
        };
        let until = now + SignedDuration::from_millis(dur);
        g.containers = spec
            .containers
            .iter()
            .map(|c| SimContainer {
                name: c.name.clone(),
                image: c.image.clone(),
                behaviour: resolve_behaviour(profile, &c.image, &c.command, &c.args),
                restart_base: 0,
            })
            .collect();
        g.cpu = cpu;
        g.memory = memory;
        g.spec = spec;
        g.transition = Some(Transition {
            status: "Updating".into(),
            from: now,
            until,
        });
        g.run_epoch = until;
        g.init_failed_at = None;
        g.events.push(RecordedEvent {
            at: now,
            kind: "Normal".into(),
            reason: "Updating".into(),
            message: "Container group is updating".into(),
        });
        let id = g.id.clone();
        self.remember_token("UpdateContainerGroup", &req.client_token, fp, &id);
        Ok(serde_json::json!({}))
    }

    /// `DescribeContainerLog`.
    pub fn logs(
        &mut self,
        ctx: &Ctx<'_>,
        profile: &Profile,
    ) -> Result<serde_json::Value, ApiError> {
        region_of(ctx.params, profile)?;
        let req: DescribeContainerLogRequest = from_params(ctx.params)?;
        require(&req.container_group_id, "ContainerGroupId")?;
        require(&req.container_name, "ContainerName")?;
        let tail = req.tail.unwrap_or(500);
        if tail > 2000 {
            return Err(ApiError::invalid("Tail", "must be at most 2000"));
        }
        if let Some(l) = req.limit_bytes
            && !(1..=1_048_576).contains(&l)
        {
            return Err(ApiError::invalid(
                "LimitBytes",
                "must be between 1 and 1048576",
            ));
        }
        let start_time = match &req.start_time {
            Some(s) => Some(
                wire::parse_timestamp(s)
                    .ok_or_else(|| ApiError::invalid("StartTime", "not an RFC 3339 time"))?,
            ),
            None => None,
        };
        let now = Timestamp::now();
        let g = self.get(&req.container_group_id, now)?;
        let view = g.view(now, &profile.timing);
        let (idx, is_init) = match g
            .containers
            .iter()
            .position(|c| c.name == req.container_name)
        {
            Some(i) => (i, false),
            None => match g
                .init_containers
                .iter()
                .position(|c| c.name == req.container_name)
            {
                Some(i) => (i, true),
                None => {
                    return Err(ApiError::invalid(
                        "ContainerName",
                        format!("no container named {:?}", req.container_name),
                    ));
                }
            },
        };
        let (sim, cv) = if is_init {
            (&g.init_containers[idx], view.init_containers.get(idx))
        } else {
            (&g.containers[idx], view.containers.get(idx))
        };
        let mut since = start_time;
        if let Some(s) = req.since_seconds {
            let t = now - SignedDuration::from_secs(s as i64);
            since = Some(since.map_or(t, |x| x.max(t)));
        }
        let window = cv.and_then(|cv: &ContainerView| {
            if req.last_time == Some(true) {
                cv.previous.map(|(s, e, _)| (s, e))
            } else {
                cv.started
                    .map(|s| (s, cv.finished.unwrap_or(now).min(now)))
                    .or_else(|| {
                        if cv.state == "Waiting" {
                            cv.previous.map(|(s, e, _)| (s, e))
                        } else {
                            None
                        }
                    })
            }
        });
        let mut content = String::new();
        if let Some((s, e)) = window {
            for line in attempt_logs(&sim.behaviour, s, e, since, tail as usize) {
                if req.timestamps == Some(true) {
                    content.push_str(&line.at.strftime("%Y-%m-%dT%H:%M:%S%.9fZ").to_string());
                    content.push(' ');
                }
                content.push_str(&line.text);
                content.push('\n');
            }
        }
        if let Some(limit) = req.limit_bytes {
            let mut cut = (limit as usize).min(content.len());
            while !content.is_char_boundary(cut) {
                cut -= 1;
            }
            content.truncate(cut);
        }
        Ok(serde_json::json!({ "ContainerName": req.container_name, "Content": content }))
    }

    /// Looks up what exec needs: the group's spec, IP and whether the container runs.
    pub fn exec_target(
        &self,
        ctx: &Ctx<'_>,
        profile: &Profile,
    ) -> Result<(ExecContainerCommandRequest, Group), ApiError> {
        region_of(ctx.params, profile)?;
        let req: ExecContainerCommandRequest = from_params(ctx.params)?;
        require(&req.container_group_id, "ContainerGroupId")?;
        require(&req.container_name, "ContainerName")?;
        if req.command.is_empty() {
            return Err(ApiError::missing("Command"));
        }
        if req.command.len() > 20 || req.command.iter().any(|c| c.len() > 256) {
            return Err(ApiError::invalid(
                "Command",
                "at most 20 items of at most 256 characters",
            ));
        }
        if req.sync == Some(true) && req.tty == Some(true) {
            return Err(ApiError::invalid(
                "TTY",
                "TTY must be false when Sync is true",
            ));
        }
        let now = Timestamp::now();
        let g = self.get(&req.container_group_id, now)?;
        let view = g.view(now, &profile.timing);
        let idx = g
            .containers
            .iter()
            .position(|c| c.name == req.container_name)
            .ok_or_else(|| {
                ApiError::invalid(
                    "ContainerName",
                    format!("no container named {:?}", req.container_name),
                )
            })?;
        if view
            .containers
            .get(idx)
            .is_none_or(|c| c.state != "Running")
        {
            return Err(ApiError::incorrect_status(
                &g.id,
                &format!(
                    "{} (container {} is not running)",
                    view.status, req.container_name
                ),
            ));
        }
        Ok((req, g.clone()))
    }

    /// `DescribeContainerGroupMetric`.
    pub fn metric(
        &mut self,
        ctx: &Ctx<'_>,
        profile: &Profile,
    ) -> Result<serde_json::Value, ApiError> {
        region_of(ctx.params, profile)?;
        let req: DescribeContainerGroupMetricRequest = from_params(ctx.params)?;
        require(&req.container_group_id, "ContainerGroupId")?;
        let period: i64 = match req.period.as_deref() {
            None | Some("") => 60,
            Some(p) => match p.parse::<i64>() {
                Ok(v @ (15 | 30 | 60 | 600)) => v,
                _ => return Err(ApiError::invalid("Period", "must be 15, 30, 60 or 600")),
            },
        };
        let parse = |s: &Option<String>, name: &str| -> Result<Option<Timestamp>, ApiError> {
            match s {
                Some(s) => wire::parse_timestamp(s)
                    .map(Some)
                    .ok_or_else(|| ApiError::invalid(name, "not an RFC 3339 time")),
                None => Ok(None),
            }
        };
        let now = Timestamp::now();
        let end = parse(&req.end_time, "EndTime")?.unwrap_or(now).min(now);
        let start =
            parse(&req.start_time, "StartTime")?.unwrap_or(end - SignedDuration::from_secs(300));
        if start > end {
            return Err(ApiError::invalid("StartTime", "must not be after EndTime"));
        }
        let g = self.get(&req.container_group_id, now)?;
        let view = g.view(now, &profile.timing);
        let running_from = g.run_epoch;
        let running_to = view.terminal_at.unwrap_or(now);
        let mut records = Vec::new();
        let mut t = start.as_second() - start.as_second().rem_euclid(period) + period;
        let seed =
            g.id.bytes()
                .fold(7u64, |a, b| a.wrapping_mul(131).wrapping_add(b as u64));
        while t <= end.as_second() {
            let at = Timestamp::from_second(t)
                .map_err(|_| ApiError::invalid("StartTime", "out of range"))?;
            if at >= running_from && at <= running_to {
                let wobble = ((seed ^ (t as u64)).wrapping_mul(2654435761) % 1000) as i64;
                let cpu_limit = (g.cpu * 1000.0) as i64;
                let nano = (cpu_limit * 1_000_000) / 20 + wobble * 10_000;
                let mem_limit = (g.memory * 1024.0 * 1024.0 * 1024.0) as i64;
                let usage = mem_limit / 10 + wobble * 100_000;
                let elapsed = at.duration_since(running_from).as_secs();
                let containers: Vec<ContainerMetric> = g
                    .containers
                    .iter()
                    .map(|c| ContainerMetric {
                        name: c.name.clone(),
                        cpu: CpuMetric {
                            limit: cpu_limit,
                            load: 0,
                            usage_core_nano_seconds: nano * elapsed
                                / g.containers.len().max(1) as i64,
                            usage_nano_cores: nano / g.containers.len().max(1) as i64,
                        },
                        memory: MemoryMetric {
                            available_bytes: mem_limit - usage,
                            cache: usage / 5,
                            rss: usage / 2,
                            usage_bytes: usage / g.containers.len().max(1) as i64,
                            working_set: usage / 2,
                        },
                    })
                    .collect();
                records.push(MetricRecord {
                    timestamp: ts(at),
                    cpu: CpuMetric {
                        limit: cpu_limit,
                        load: 0,
                        usage_core_nano_seconds: nano * elapsed,
                        usage_nano_cores: nano,
                    },
                    memory: MemoryMetric {
                        available_bytes: mem_limit - usage,
                        cache: usage / 5,
                        rss: usage / 2,
                        usage_bytes: usage,
                        working_set: usage / 2,
                    },
                    network: NetworkMetric {
                        interfaces: vec![NetworkInterfaceMetric {
                            name: "eth0".into(),
                            rx_bytes: elapsed * 2048,
                            tx_bytes: elapsed * 1024,
                            rx_packets: elapsed * 20,
                            tx_packets: elapsed * 12,
                        }],
                    },
                    containers,
                });
            }
            t += period;
        }
        let skip = records.len().saturating_sub(50);
        let records = records.split_off(skip);
        Ok(serde_json::json!({ "ContainerGroupId": g.id, "Records": records }))
    }

    /// `DescribeContainerGroupPrice`.
    pub fn price(
        &mut self,
        ctx: &Ctx<'_>,
        profile: &Profile,
    ) -> Result<serde_json::Value, ApiError> {
        region_of(ctx.params, profile)?;
        let req: DescribeContainerGroupPriceRequest = from_params(ctx.params)?;
        if req.cpu.is_none() && req.memory.is_none() && req.instance_type.is_none() {
            return Err(ApiError::missing("Cpu"));
        }
        if let Some(z) = &req.zone_id
            && !profile.zones.contains(z)
        {
            return Err(ApiError::invalid(
                "ZoneId",
                format!("zone {z} does not exist"),
            ));
        }
        let probe = CreateContainerGroupRequest {
            cpu: req.cpu,
            memory: req.memory,
            ..Default::default()
        };
        let (cpu, memory) = if req.instance_type.is_some() && req.cpu.is_none() {
            (2.0, 4.0)
        } else {
            effective_spec(&probe)?
        };
        let cpu_price = cpu * spec::PRICE_PER_VCPU_SECOND;
        let mem_price = memory * spec::PRICE_PER_GIB_SECOND;
        let storage_price = req.ephemeral_storage.unwrap_or(0).max(0) as f64 * 0.000_000_03;
        let original = cpu_price + mem_price + storage_price;
        let spot = req.spot_strategy.is_some_and(|s| s != SpotStrategy::NoSpot);
        let trade = if spot {
            original * spec::SPOT_FRACTION
        } else {
            original
        };
        let detail = |resource: &str, p: f64| PriceDetail {
            resource: resource.into(),
            original_price: p,
            discount_price: if spot {
                p - p * spec::SPOT_FRACTION
            } else {
                0.0
            },
            trade_price: if spot { p * spec::SPOT_FRACTION } else { p },
            rules: PriceRules::default(),
        };
        let zones: Vec<String> = req
            .zone_id
            .clone()
            .map(|z| vec![z])
            .unwrap_or_else(|| profile.zones.clone());
        let info = PriceInfo {
            price: Price {
                currency: "USD".into(),
                original_price: original,
                discount_price: original - trade,
                trade_price: trade,
                detail_infos: PriceDetailInfos {
                    detail_info: vec![
                        detail("cpu", cpu_price),
                        detail("memory", mem_price),
                        detail("storage", storage_price),
                    ],
                },
            },
            rules: PriceRules::default(),
            spot_prices: SpotPrices {
                spot_price: if spot {
                    zones
                        .into_iter()
                        .map(|z| SpotPrice {
                            instance_type: req
                                .instance_type
                                .clone()
                                .unwrap_or_else(|| spec::spec_name(cpu, memory)),
                            zone_id: z,
                            origin_price: original,
                            spot_price: trade,
                        })
                        .collect()
                } else {
                    Vec::new()
                },
            },
        };
        Ok(serde_json::json!({ "PriceInfo": info }))
    }
}

fn parse_token(token: &Option<String>) -> Result<Option<u64>, ApiError> {
    match token.as_deref() {
        None | Some("") => Ok(None),
        Some(t) => u64::from_str_radix(t, 16)
            .map(Some)
            .map_err(|_| ApiError::invalid("NextToken", "not a token this service issued")),
    }
}

fn state_of(v: &ContainerView) -> ContainerState {
    ContainerState {
        state: v.state.into(),
        detail_status: match v.state {
            "Running" => "working".into(),
            _ => v.reason.clone(),
        },
        exit_code: v.exit_code,
        signal: if v.exit_code == 137 { 9 } else { 0 },
        reason: v.reason.clone(),
        message: String::new(),
        start_time: opt_ts(v.started),
        finish_time: opt_ts(v.finished),
    }
}

fn previous_of(v: &ContainerView) -> ContainerState {
    match v.previous {
        Some((s, e, code)) => ContainerState {
            state: "Terminated".into(),
            detail_status: if code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            },
            exit_code: code,
            signal: 0,
            reason: if code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            },
            message: String::new(),
            start_time: ts(s),
            finish_time: ts(e),
        },
        None => ContainerState::default(),
    }
}

fn env_info(c: &Container, ip: &str) -> Vec<EnvVarInfo> {
    if c.environment_var_hide == Some(true) {
        return Vec::new();
    }
    c.env
        .iter()
        .map(|e| EnvVarInfo {
            key: e.key.clone(),
            value: match &e.field_ref {
                Some(_) => ip.to_string(),
                None => e.value.clone().unwrap_or_default(),
            },
            value_from: e.field_ref.as_ref().map(|f| EnvVarSource {
                field_ref: Some(f.clone()),
            }),
        })
        .collect()
}

fn container_info(c: &Container, v: Option<&ContainerView>, ip: &str) -> ContainerInfo {
    let v = v.cloned();
    ContainerInfo {
        name: c.name.clone(),
        image: c.image.clone(),
        cpu: c.cpu.unwrap_or(0.0),
        memory: c.memory.unwrap_or(0.0),
        gpu: c.gpu.unwrap_or(0),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        image_pull_policy: c
            .image_pull_policy
            .map(|p| format!("{p:?}"))
            .unwrap_or_else(|| "IfNotPresent".into()),
        restart_count: v.as_ref().map(|v| v.restart_count).unwrap_or(0),
        ready: v.as_ref().is_some_and(|v| v.state == "Running"),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        commands: c.command.clone(),
        args: c.args.clone(),
        ports: c
            .ports
            .iter()
            .map(|p| PortInfo {
                port: p.port,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            })
            .collect(),
        volume_mounts: c
            .volume_mounts
            .iter()
            .map(|m| VolumeMountInfo {
                name: m.name.clone(),
                mount_path: m.mount_path.clone(),
                sub_path: m.sub_path.clone().unwrap_or_default(),
                read_only: m.read_only.unwrap_or(false),
                mount_propagation: m.mount_propagation.clone().unwrap_or_else(|| "None".into()),
            })
            .collect(),
        environment_vars: env_info(c, ip),
        current_state: v.as_ref().map(state_of).unwrap_or_default(),
        previous_state: v.as_ref().map(previous_of).unwrap_or_default(),
    }
}

fn events_of(g: &Group, view: &GroupView, now: Timestamp) -> Vec<Event> {
    let mut out = Vec::new();
    let mut push = |at: Timestamp, kind: &str, reason: &str, message: String, count: i64| {
        if at <= now {
            out.push((
                at,
                Event {
                    count,
                    kind: kind.into(),
                    name: g.spec.container_group_name.clone(),
                    message,
                    reason: reason.into(),
                    first_timestamp: ts(at),
                    last_timestamp: ts(at),
                },
            ));
        }
    };
    if let Some(msg) = &g.schedule_failed {
        push(g.scheduled_at, "Warning", "NoStock", msg.clone(), 1);
    } else {
        push(
            g.scheduled_at,
            "Normal",
            "Scheduled",
            format!("Successfully assigned {} to {}", g.id, g.zone),
            1,
        );
        for (i, c) in g
            .init_containers
            .iter()
            .chain(g.containers.iter())
            .enumerate()
        {
            push(
                g.scheduled_at,
                "Normal",
                "Pulling",
                format!("Pulling image \"{}\"", c.image),
                1,
            );
            push(
                g.init_epoch,
                "Normal",
                "Pulled",
                format!("Successfully pulled image \"{}\"", c.image),
                1,
            );
            let started = if i < g.init_containers.len() {
                g.init_epoch
            } else {
                g.run_epoch
            };
            let restarts = if i < g.init_containers.len() {
                0
            } else {
                view.containers
                    .get(i - g.init_containers.len())
                    .map(|v| v.restart_count)
                    .unwrap_or(0)
            };
            push(
                started,
                "Normal",
                "Created",
                format!("Created container {}", c.name),
                restarts + 1,
            );
            push(
                started,
                "Normal",
                "Started",
                format!("Started container {}", c.name),
                restarts + 1,
            );
            if let Some(v) = view.containers.get(i.wrapping_sub(g.init_containers.len()))
                && v.reason == "CrashLoopBackOff"
            {
                push(
                    v.last_change,
                    "Warning",
                    "BackOff",
                    format!("Back-off restarting failed container {}", c.name),
                    v.restart_count,
                );
            }
        }
        if let (Some(at), Some(reason)) = (view.terminal_at, &view.override_reason) {
            push(
                at,
                "Warning",
                reason,
                format!("Container group {} stopped: {reason}", g.id),
                1,
            );
        }
    }
    for e in &g.events {
        push(e.at, &e.kind, &e.reason, e.message.clone(), 1);
    }
    out.sort_by_key(|(at, _)| *at);
    let skip = out.len().saturating_sub(50);
    out.into_iter().skip(skip).map(|(_, e)| e).collect()
}

fn describe_group(
    g: &Group,
    now: Timestamp,
    profile: &Profile,
    with_event: bool,
) -> ContainerGroup {
    let view = g.view(now, &profile.timing);
    let spec = &g.spec;
    let terminal = |s: ContainerGroupStatus| {
        if view.status == s {
            opt_ts(view.terminal_at)
        } else {
            String::new()
        }
    };
    ContainerGroup {
        container_group_id: g.id.clone(),
        container_group_name: spec.container_group_name.clone(),
        region_id: profile.region_id.clone(),
        zone_id: g.zone.clone(),
        vpc_id: g.vpc.clone(),
        vswitch_id: g.vswitch.clone(),
        security_group_id: g.security_group.clone(),
        eni_instance_id: format!("eni-{}", &g.id[4..]),
        intranet_ip: if view.status == ContainerGroupStatus::Scheduling {
            String::new()
        } else {
            g.ip.clone()
        },
        internet_ip: String::new(),
        ipv6_address: String::new(),
        status: view.status.clone(),
        restart_policy: format!("{:?}", g.policy()),
        cpu: g.cpu,
        memory: g.memory,
        instance_type: g.instance_type.clone(),
        spot_strategy: format!("{:?}", spec.spot_strategy.unwrap_or_default()),
        spot_price_limit: spec.spot_price_limit.unwrap_or(0.0),
        discount: if spec
            .spot_strategy
            .is_some_and(|s| s != SpotStrategy::NoSpot)
        {
            spec::SPOT_FRACTION * 10.0
        } else {
            0.0
        },
        resource_group_id: spec.resource_group_id.clone().unwrap_or_default(),
        ram_role_name: spec.ram_role_name.clone().unwrap_or_default(),
        compute_category: spec.compute_category.first().cloned().unwrap_or_default(),
        ephemeral_storage: spec.ephemeral_storage.unwrap_or(0),
        creation_time: ts(g.created_at),
        succeeded_time: terminal(ContainerGroupStatus::Succeeded),
        failed_time: terminal(ContainerGroupStatus::Failed),
        expired_time: terminal(ContainerGroupStatus::Expired),
        tags: spec.tags.clone(),
        events: if with_event {
            events_of(g, &view, now)
        } else {
            Vec::new()
        },
        containers: spec
            .containers
            .iter()
            .enumerate()
            .map(|(i, c)| container_info(c, view.containers.get(i), &g.ip))
            .collect(),
        init_containers: spec
            .init_containers
            .iter()
            .enumerate()
            .map(|(i, c)| container_info(c, view.init_containers.get(i), &g.ip))
            .collect(),
        volumes: spec
            .volumes
            .iter()
            .map(|v| VolumeInfo {
                kind: v
                    .kind
                    .map(|k| {
                        serde_json::to_value(k)
                            .ok()
                            .and_then(|x| x.as_str().map(String::from))
                            .unwrap_or_default()
                    })
                    .unwrap_or_default(),
                name: v.name.clone(),
                nfs_volume_path: v
                    .nfs_volume
                    .as_ref()
                    .map(|n| n.path.clone())
                    .unwrap_or_default(),
                nfs_volume_server: v
                    .nfs_volume
                    .as_ref()
                    .map(|n| n.server.clone())
                    .unwrap_or_default(),
                nfs_volume_read_only: v
                    .nfs_volume
                    .as_ref()
                    .and_then(|n| n.read_only)
                    .unwrap_or(false),
                disk_volume_disk_id: v
                    .disk_volume
                    .as_ref()
                    .map(|d| d.disk_id.clone())
                    .unwrap_or_default(),
                disk_volume_fs_type: v
                    .disk_volume
                    .as_ref()
                    .and_then(|d| d.fs_type.clone())
                    .unwrap_or_default(),
                flex_volume_driver: v
                    .flex_volume
                    .as_ref()
                    .map(|f| f.driver.clone())
                    .unwrap_or_default(),
                flex_volume_fs_type: v
                    .flex_volume
                    .as_ref()
                    .and_then(|f| f.fs_type.clone())
                    .unwrap_or_default(),
                flex_volume_options: v
                    .flex_volume
                    .as_ref()
                    .and_then(|f| f.options.clone())
                    .unwrap_or_default(),
                empty_dir_volume_medium: v
                    .empty_dir_volume
                    .as_ref()
                    .and_then(|e| e.medium.clone())
                    .unwrap_or_default(),
                empty_dir_volume_size_limit: v
                    .empty_dir_volume
                    .as_ref()
                    .and_then(|e| e.size_limit.clone())
                    .unwrap_or_default(),
                config_file_volume_config_file_to_paths: v
                    .config_file_volume
                    .as_ref()
                    .map(|c| {
                        c.files
                            .iter()
                            .map(|f| ConfigFileInfo {
                                content: f.content.clone(),
                                path: f.path.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect(),
        host_aliases: spec
            .host_aliases
            .iter()
            .map(|h| HostAliasInfo {
                ip: h.ip.clone(),
                hostnames: h.hostnames.clone(),
            })
            .collect(),
        dns_config: spec.dns_config.as_ref().map(|d| DnsConfigInfo {
            name_servers: d.name_servers.clone(),
            searches: d.searches.clone(),
            options: d.options.clone(),
        }),
        eci_security_context: spec.security_context.as_ref().map(|s| EciSecurityContext {
            sysctls: s.sysctls.clone(),
        }),
    }
}

fn tag_value<'a>(g: &'a Group, suffixes: &[&str]) -> Option<&'a str> {
    g.spec
        .tags
        .iter()
        .find(|t| suffixes.iter().any(|s| key_names(&t.key, s)))
        .map(|t| t.value.as_str())
}

/// Whether a tag `key` is `name` or ends in `/name` or `.name`, ignoring ASCII case
/// (compared in place: this runs for every group a describe renders).
fn key_names(key: &str, name: &str) -> bool {
    let (key, name) = (key.as_bytes(), name.as_bytes());
    if key.len() < name.len() {
        return false;
    }
    let (head, tail) = key.split_at(key.len() - name.len());
    tail.eq_ignore_ascii_case(name) && matches!(head.last(), None | Some(b'/' | b'.'))
}

fn pod_state(v: &ContainerView) -> PodContainerState {
    match v.state {
        "Running" => PodContainerState {
            running: Some(RunningState {
                started_at: opt_ts(v.started),
            }),
            ..Default::default()
        },
        "Terminated" => PodContainerState {
            terminated: Some(TerminatedState {
                container_id: String::new(),
                exit_code: v.exit_code,
                signal: if v.exit_code == 137 { 9 } else { 0 },
                reason: v.reason.clone(),
                message: String::new(),
                started_at: opt_ts(v.started),
                finished_at: opt_ts(v.finished),
            }),
            ..Default::default()
        },
        _ => PodContainerState {
            waiting: Some(WaitingState {
                reason: v.reason.clone(),
                message: String::new(),
            }),
            ..Default::default()
        },
    }
}

fn status_info(g: &Group, now: Timestamp, profile: &Profile) -> ContainerGroupStatusInfo {
    let view = g.view(now, &profile.timing);
    let phase = match view.status {
        ContainerGroupStatus::Scheduling
        | ContainerGroupStatus::Pending
        | ContainerGroupStatus::Restarting
        | ContainerGroupStatus::Updating => "Pending",
        ContainerGroupStatus::Running | ContainerGroupStatus::Terminating => "Running",
        ContainerGroupStatus::Succeeded => "Succeeded",
        _ => "Failed",
    };
    let scheduled = view.status != ContainerGroupStatus::Scheduling && g.schedule_failed.is_none();
    let all_ready =
        !view.containers.is_empty() && view.containers.iter().all(|c| c.state == "Running");
    let cond = |kind: &str, ok: bool, at: Timestamp| PodCondition {
        kind: kind.into(),
        status: if ok { "True".into() } else { "False".into() },
        reason: String::new(),
        message: String::new(),
        last_transition_time: ts(at),
    };
    let mut conditions = vec![cond("PodScheduled", scheduled, g.scheduled_at.min(now))];
    if scheduled {
        conditions.push(cond("ContainerInstanceCreated", true, g.scheduled_at));
        conditions.push(cond(
            "Initialized",
            now >= g.run_epoch,
            g.run_epoch.min(now),
        ));
        conditions.push(cond("ContainersReady", all_ready, view.changed_at));
        conditions.push(cond("Ready", all_ready, view.changed_at));
    }
    ContainerGroupStatusInfo {
        container_group_id: g.id.clone(),
        name: tag_value(g, &["podname", "pod-name", "name"])
            .unwrap_or(&g.spec.container_group_name)
            .to_string(),
        namespace: tag_value(g, &["namespace"]).unwrap_or_default().to_string(),
        status: view.status.clone(),
        uuid: tag_value(g, &["uid", "pod-uid", "poduid"])
            .unwrap_or_default()
            .to_string(),
        annotations: "{}".into(),
        pod_status: Some(PodStatus {
            phase: phase.into(),
            pod_ip: if scheduled {
                g.ip.clone()
            } else {
                String::new()
            },
            pod_ips: if scheduled {
                vec![PodIp { ip: g.ip.clone() }]
            } else {
                Vec::new()
            },
            host_ip: if scheduled {
                g.ip.clone()
            } else {
                String::new()
            },
            qos_class: "Guaranteed".into(),
            start_time: if scheduled {
                ts(g.scheduled_at)
            } else {
                String::new()
            },
            conditions,
            container_statuses: g
                .containers
                .iter()
                .zip(view.containers.iter())
                .map(|(c, v)| PodContainerStatus {
                    name: c.name.clone(),
                    image: c.image.clone(),
                    image_id: format!(
                        "{}@sha256:{}",
                        c.image,
                        &wire::sign::sha256_hex(c.image.as_bytes())[..16]
                    ),
                    ready: v.state == "Running",
                    started: v.state == "Running",
                    restart_count: v.restart_count,
                    state: pod_state(v),
                    last_state: match v.previous {
                        Some((s, e, code)) => PodContainerState {
                            terminated: Some(TerminatedState {
                                exit_code: code,
                                reason: if code == 0 {
                                    "Completed".into()
                                } else {
                                    "Error".into()
                                },
                                started_at: ts(s),
                                finished_at: ts(e),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        None => PodContainerState::default(),
                    },
                })
                .collect(),
        }),
    }
}

/// `CreateContainerGroup`, first half (no lock needed): parse, validate, size, place,
/// resolve behaviours.
pub fn prepare_create(ctx: &Ctx<'_>, profile: &Profile) -> Result<PreparedCreate, ApiError> {
    region_of(ctx.params, profile)?;
    let req: CreateContainerGroupRequest = from_params(ctx.params)?;
    validate_token(&req.client_token)?;
    let token = req.client_token.clone();
    let fingerprint = fingerprint(ctx.params);
    Ok(PreparedCreate {
        token,
        fingerprint,
        group: build_group(req, profile),
    })
}

/// A parsed, validated create waiting for the world lock.
pub struct PreparedCreate {
    token: Option<String>,
    fingerprint: String,
    group: Result<Group, ApiError>,
}

fn build_group(req: CreateContainerGroupRequest, profile: &Profile) -> Result<Group, ApiError> {
    require(&req.container_group_name, "ContainerGroupName")?;
    if !valid_name(&req.container_group_name) {
        return Err(ApiError::invalid(
            "ContainerGroupName",
            "2-128 lower-case letters, digits and hyphens, not starting or ending with a hyphen",
        ));
    }
    if req.containers.is_empty() {
        return Err(ApiError::missing("Container.1.Name"));
    }
    validate_volumes(&req.volumes)?;
    let mut names = Vec::new();
    validate_containers(&req.containers, "Container", &req.volumes, &mut names)?;
    validate_containers(
        &req.init_containers,
        "InitContainer",
        &req.volumes,
        &mut names,
    )?;
    validate_tags(&req.tags)?;
    if req.vswitch_ids.len() > 10 {
        return Err(ApiError::invalid(
            "VSwitchId",
            "at most 10 vSwitches are allowed",
        ));
    }
    if req.spot_strategy == Some(SpotStrategy::SpotWithPriceLimit) && req.spot_price_limit.is_none()
    {
        return Err(ApiError::missing("SpotPriceLimit"));
    }
    if let Some(sg) = &req.security_group_id
        && !sg.starts_with("sg-")
    {
        return Err(ApiError::new(
            404,
            "InvalidSecurityGroupId.NotFound",
            format!("The specified security group {sg} does not exist."),
        ));
    }
    if let Some(bad) = req.vswitch_ids.iter().find(|v| !v.starts_with("vsw-")) {
        return Err(ApiError::new(
            404,
            "IncorrectVSwitchId",
            format!("The specified parameter VSwitchId {bad} is not valid."),
        ));
    }
    if let Some(z) = &req.zone_id
        && !profile.zones.contains(z)
    {
        return Err(ApiError::invalid(
            "ZoneId",
            format!("zone {z} does not exist in {}", profile.region_id),
        ));
    }
    let (cpu, memory) = effective_spec(&req)?;
    let spec_key = format!("{}-{}", cpu, memory);
    let spec_label = spec::spec_name(cpu, memory);

    // Placement: candidate (zone, vswitch) pairs in order; first with stock wins.
    let candidates: Vec<(String, String)> = if !req.vswitch_ids.is_empty() {
        let mut c: Vec<(String, String)> = req
            .vswitch_ids
            .iter()
            .map(|v| (zone_of_vswitch(v, &profile.zones), v.clone()))
            .collect();
        if let Some(z) = &req.zone_id {
            c.retain(|(zone, _)| zone == z);
        }
        if req.schedule_strategy.as_deref() == Some("VSwitchRandom") {
            use rand::seq::SliceRandom;
            c.shuffle(&mut rand::rng());
        }
        c
    } else if let Some(z) = &req.zone_id {
        vec![(
            z.clone(),
            format!("vsw-default-{}", z.rsplit('-').next().unwrap_or("a")),
        )]
    } else {
        profile
            .zones
            .iter()
            .map(|z| {
                (
                    z.clone(),
                    format!("vsw-default-{}", z.rsplit('-').next().unwrap_or("a")),
                )
            })
            .collect()
    };
    if candidates.is_empty() {
        return Err(ApiError::invalid(
            "VSwitchId",
            "no vSwitch is in the requested zone",
        ));
    }
    let spec_sold_out =
        profile.stock.out_of_stock_specs.iter().any(|s| {
            *s == spec_key || *s == spec_label || req.instance_types.iter().any(|t| t == s)
        });
    let placed = candidates
        .iter()
        .find(|(z, _)| !spec_sold_out && !profile.stock.out_of_stock_zones.contains(z))
        .cloned();
    let no_stock_message = |zone: &str| {
        format!(
            "The resource in zone {zone} with spec {spec_label} is out of stock. Try other zones or specs."
        )
    };
    let (zone, vswitch, schedule_failed) = match placed {
        Some((z, v)) => (z, v, None),
        None if profile.stock.asynchronous => {
            let (z, v) = candidates[0].clone();
            let msg = no_stock_message(&z);
            (z, v, Some(msg))
        }
        None => {
            return Err(ApiError::new(
                403,
                "OperationDenied.NoStock",
                no_stock_message(&candidates[0].0),
            ));
        }
    };
    if req.dry_run == Some(true) {
        return Err(ApiError::new(
            400,
            "DryRunOperation",
            "Request validation has been passed with DryRun flag set.",
        ));
    }

    let now = Timestamp::now();
    let timing = &profile.timing;
    let d = |ms: u64| {
        if timing.instant {
            SignedDuration::ZERO
        } else {
            SignedDuration::from_millis(ms as i64)
        }
    };
    let scheduled_at = now + d(timing.scheduling_ms);
    let init_epoch = scheduled_at + d(timing.pulling_ms);
    let sim = |c: &Container| SimContainer {
        name: c.name.clone(),
        image: c.image.clone(),
        behaviour: resolve_behaviour(profile, &c.image, &c.command, &c.args),
        restart_base: 0,
    };
    let containers: Vec<SimContainer> = req.containers.iter().map(sim).collect();
    let init_containers: Vec<SimContainer> = req.init_containers.iter().map(sim).collect();
    let mut run_epoch = init_epoch;
    let mut init_failed_at = None;
    for c in &init_containers {
        let run = if timing.instant {
            0
        } else {
            c.behaviour
                .exit_after_ms
                .unwrap_or(timing.init_container_ms)
        };
        run_epoch +=
            SignedDuration::from_millis(run.max(if timing.instant { 0 } else { 1 }) as i64);
        if c.behaviour.exit_code != 0 && init_failed_at.is_none() {
            init_failed_at = Some(run_epoch);
        }
    }
    let mut overrides = Vec::new();
    if let Some(secs) = req.active_deadline_seconds.filter(|s| *s > 0) {
        overrides.push(Override {
            at: scheduled_at + SignedDuration::from_secs(secs),
            status: "Failed".into(),
            reason: "DeadlineExceeded".into(),
        });
    }
    if req.spot_strategy.is_some_and(|s| s != SpotStrategy::NoSpot)
        && let Some(ms) = profile.spot.reclaim_after_ms
    {
        overrides.push(Override {
            at: run_epoch + SignedDuration::from_millis(ms as i64),
            status: "Expired".into(),
            reason: "SpotInstanceReclaimed".into(),
        });
    }
    Ok(Group {
        seq: 0,
        id: String::new(),
        zone,
        vswitch,
        security_group: req
            .security_group_id
            .clone()
            .unwrap_or_else(|| "sg-default".into()),
        vpc: "vpc-emulated".into(),
        ip: String::new(),
        cpu,
        memory,
        instance_type: req.instance_types.first().cloned().unwrap_or_default(),
        created_at: now,
        scheduled_at,
        init_epoch,
        run_epoch,
        schedule_failed,
        init_failed_at,
        transition: None,
        overrides,
        delete_at: None,
        containers,
        init_containers,
        events: Vec::new(),
        spec: req,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn create(world: &mut World, profile: &Profile, name: &str, node: &str) -> String {
        let p = params(&[
            ("RegionId", "cn-hangzhou"),
            ("ContainerGroupName", name),
            ("Container.1.Name", "app"),
            ("Container.1.Image", "nginx:1.25"),
            ("Tag.1.Key", "node"),
            ("Tag.1.Value", node),
        ]);
        let ctx = Ctx {
            params: &p,
            host: "localhost",
            scheme: "http",
        };
        let prepared = prepare_create(&ctx, profile).expect("valid create");
        let reply = world.commit_create(prepared, profile).expect("created");
        reply["ContainerGroupId"].as_str().expect("id").to_string()
    }

    /// Lists every page by the `node` tag, 20 at a time: the totals each page reported and
    /// the ids listed.
    fn list_all(world: &mut World, profile: &Profile, node: &str) -> (Vec<i64>, Vec<String>) {
        let (mut totals, mut ids, mut token) = (Vec::new(), Vec::new(), String::new());
        loop {
            let p = params(&[
                ("RegionId", "cn-hangzhou"),
                ("Tag.1.Key", "node"),
                ("Tag.1.Value", node),
                ("NextToken", &token),
            ]);
            let ctx = Ctx {
                params: &p,
                host: "localhost",
                scheme: "http",
            };
            let page = world.describe(&ctx, profile).expect("describe");
            totals.push(page.total_count);
            ids.extend(
                page.container_groups
                    .into_iter()
                    .map(|g| g.container_group_id),
            );
            if page.next_token.is_empty() {
                return (totals, ids);
            }
            token = page.next_token;
        }
    }

    #[test]
    fn kept_total_counts_follow_every_change() {
        let profile = Profile::instant();
        let mut world = World::default();
        let mut mine: Vec<String> = (0..45)
            .map(|i| create(&mut world, &profile, &format!("g{i}"), "a"))
            .collect();
        for i in 0..7 {
            create(&mut world, &profile, &format!("other{i}"), "b");
        }
        let (totals, ids) = list_all(&mut world, &profile, "a");
        assert_eq!(totals, [45, 45, 45]);
        assert_eq!(ids, mine);
        assert_eq!(list_all(&mut world, &profile, "b").0, [7]);
        // A new group: the kept count no longer holds.
        mine.push(create(&mut world, &profile, "late", "a"));
        let (totals, ids) = list_all(&mut world, &profile, "a");
        assert_eq!(totals, [46, 46, 46]);
        assert_eq!(ids, mine);

        // A group whose deletion completes later (a preStop hook): counted until then,
        // with nothing else changing in between.
        let now = Timestamp::now();
        let until = now + SignedDuration::from_secs(30);
        world.get_mut(&mine[3], now).expect("exists").delete_at = Some(until);
        let filter = |_: &Group| true;
        let tags = [Tag::new("node", "a")];
        let key = || Some("by node a".to_string());
        let (total, page) = world.listing(now, &[], &tags, filter, None, 20, key());
        assert_eq!((total, page.len()), (46, 21));
        let generation = world.generation;
        let later = until - SignedDuration::from_millis(1);
        assert_eq!(
            world.listing(later, &[], &tags, filter, None, 20, key()).0,
            46
        );
        let (total, page) = world.listing(until, &[], &tags, filter, None, 20, key());
        assert_eq!(total, 45);
        assert!(!page.contains(&world.by_id[&mine[3]]));
        assert_eq!(world.generation, generation, "counted again by time alone");
        // Pages after the first see the same total and only groups from their start.
        let start = world.by_id[&mine[40]];
        let (total, page) = world.listing(until, &[], &tags, filter, Some(start), 20, key());
        assert_eq!(total, 45);
        let expected: Vec<u64> = mine[40..].iter().map(|id| world.by_id[id]).collect();
        assert_eq!(page, expected);
    }

    #[test]
    fn tag_keys_name_a_field_alone_or_after_a_slash_or_dot_in_any_case() {
        for key in ["uid", "UID", "vnode.io/uid", "k8s.Pod.UID", "x/Uid"] {
            assert!(key_names(key, "uid"), "{key}");
        }
        for key in ["", "id", "poduid-x", "xuid", "vnode.io_uid", "uid/x", "u"] {
            assert!(!key_names(key, "uid"), "{key}");
        }
        assert!(key_names("vnode.io/pod-uid", "pod-uid"));
        assert!(!key_names("vnode.io/pod-uid", "poduid"));
    }
}
