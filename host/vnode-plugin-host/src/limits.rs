//! Output limits: answers are measured (bytes of strings) before the host uses them, so a
//! plugin cannot flood the node with a giant reason or request.

use crate::contract::{Attempt, ContainerGroupRequest, Decision, EciContainer, KeyValue, Sizing};

/// At most this many attempts per decision.
pub(crate) const MAX_ATTEMPTS: usize = 64;
/// A `defer` is capped at 10 minutes (documented in the WIT).
pub(crate) const MAX_DEFER_MS: u32 = 10 * 60 * 1000;

fn kv(list: &[KeyValue]) -> usize {
    list.iter().map(|k| k.key.len() + k.value.len()).sum()
}

fn strings(list: &[String]) -> usize {
    list.iter().map(String::len).sum()
}

fn opt(s: &Option<String>) -> usize {
    s.as_ref().map_or(0, String::len)
}

fn attempt_size(a: &Attempt) -> usize {
    let sizing = match &a.sizing {
        Sizing::InstanceTypes(t) => strings(t),
        Sizing::Auto | Sizing::Spec(_) => 0,
    };
    opt(&a.zone_id)
        + strings(&a.vswitch_ids)
        + opt(&a.schedule_strategy)
        + sizing
        + strings(&a.compute_categories)
        + kv(&a.extra_tags)
        + 32
}

/// Bytes of strings in a placement decision.
pub(crate) fn decision_size(d: &Decision) -> usize {
    match d {
        Decision::Accept(a) => a.reason.len() + a.attempts.iter().map(attempt_size).sum::<usize>(),
        Decision::Refuse(r) => r.len(),
        Decision::Defer(d) => d.reason.len(),
    }
}

fn container_size(c: &EciContainer) -> usize {
    c.name.len()
        + c.image.len()
        + strings(&c.command)
        + strings(&c.args)
        + c.env
            .iter()
            .map(|e| e.key.len() + opt(&e.value) + opt(&e.field_path))
            .sum::<usize>()
        + c.volume_mounts
            .iter()
            .map(|m| m.name.len() + m.mount_path.len() + opt(&m.sub_path))
            .sum::<usize>()
        + 64
}

/// Bytes of the variable-size parts of a container-group request (containers, env, file
/// contents, tags, raw parameters).
pub(crate) fn request_size(r: &ContainerGroupRequest) -> usize {
    use crate::contract::EciVolumeKind;
    let volumes: usize = r
        .volumes
        .iter()
        .map(|v| {
            v.name.len()
                + match &v.kind {
                    EciVolumeKind::ConfigFile(c) => c
                        .files
                        .iter()
                        .map(|f| f.path.len() + f.content_base64.len())
                        .sum(),
                    EciVolumeKind::Flex(f) => f.driver.len() + opt(&f.options),
                    _ => 64,
                }
        })
        .sum();
    r.name.len()
        + r.containers.iter().map(container_size).sum::<usize>()
        + r.init_containers.iter().map(container_size).sum::<usize>()
        + volumes
        + kv(&r.tags)
        + kv(&r.extra_params)
        + r.image_registry_credentials
            .iter()
            .map(|c| c.server.len() + c.user_name.len() + c.password.len())
            .sum::<usize>()
}
