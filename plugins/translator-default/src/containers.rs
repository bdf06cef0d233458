//! One Kubernetes container → `Container.N` / `InitContainer.N`.

use vnode_plugin_sdk::KeyValue;
use vnode_plugin_sdk::translator::{
    Container, EciContainer, EciEnv, EciHandler, EciHttpGet, EciPort, EciProbe, EciSecurityContext,
    EciTcpSocket, EciVolumeMount, EnvValue, Handler, IntOrString, PodSecurityContext, Probe,
    SecurityContext,
};

use crate::errors::{At, Result, invalid, unsupported};
use crate::resources::Size;

/// ECI takes at most this many `Arg.N` per container.
pub const MAX_ARGS: usize = 10;

/// The field paths ECI's `FieldRef` understands. On ECI the host IP *is* the pod's ENI address
/// (ack-virtual-node reports `hostIP = podIP` too), so `status.hostIP` maps to it as well.
fn eci_field_path(path: &str) -> Option<&'static str> {
    match path {
        "status.podIP" | "status.podIPs" | "status.hostIP" | "status.hostIPs" => {
            Some("status.podIP")
        }
        _ => None,
    }
}

/// Maps one container; `at` is its field path (`spec.containers[2]`).
pub fn map_container(
    c: &Container,
    at: At<'_>,
    size: Size,
    pod_sc: Option<&PodSecurityContext>,
    init: bool,
) -> Result<EciContainer> {
    // `trim().is_empty()` without the generic two-ended trim.
    if c.image.chars().all(char::is_whitespace) {
        return Err(invalid(at.field("image"), "the image is empty"));
    }
    let (command, args) = command_and_args(c, at)?;
    // A plain loop, not `collect::<Result<Vec<_>>>()`: the adapter behind that is generic code
    // of its own on every translation.
    let mut env = Vec::with_capacity(c.env.len());
    for (j, e) in c.env.iter().enumerate() {
        env.push(map_env(&e.name, &e.value, at.field("env").index(j))?);
    }
    let mut ports = Vec::with_capacity(c.ports.len());
    for (j, p) in c.ports.iter().enumerate() {
        let protocol = p.protocol.as_deref().unwrap_or("TCP");
        if protocol != "TCP" && protocol != "UDP" {
            return Err(unsupported(
                at.field("ports").index(j).field("protocol"),
                format!("protocol {protocol:?} is not available on ECI (TCP or UDP)"),
            ));
        }
        ports.push(EciPort {
            port: p.container_port,
            protocol: protocol.to_string(),
        });
    }
    let volume_mounts = c
        .volume_mounts
        .iter()
        .map(|m| EciVolumeMount {
            name: m.name.clone(),
            mount_path: m.mount_path.clone(),
            sub_path: m.sub_path.clone().filter(|s| !s.is_empty()),
            read_only: m.read_only,
            mount_propagation: m.mount_propagation.clone(),
        })
        .collect();
    let probe = |p: &Option<Probe>, name: &'static str| -> Result<Option<EciProbe>> {
        p.as_ref()
            .map(|p| map_probe(p, c, at.field(name)))
            .transpose()
    };
    let (mut liveness_probe, readiness_probe) = if init {
        (None, None)
    } else {
        (
            probe(&c.liveness_probe, "livenessProbe")?,
            probe(&c.readiness_probe, "readinessProbe")?,
        )
    };
    // ECI has no startup probe. What one buys in Kubernetes is a liveness probe that waits until
    // a slow start is over, so its worst-case duration (initial delay + period × failure
    // threshold) is added to the liveness probe's initial delay: the pre-startupProbe idiom.
    if let (Some(startup), Some(live), false) = (&c.startup_probe, liveness_probe.as_mut(), init) {
        let period = i64::from(startup.period_seconds.unwrap_or(10));
        let failures = i64::from(startup.failure_threshold.unwrap_or(3));
        let budget = i64::from(startup.initial_delay_seconds.unwrap_or(0)) + period * failures;
        let delay = i64::from(live.initial_delay_seconds.unwrap_or(0)) + budget;
        live.initial_delay_seconds = Some(i32::try_from(delay).unwrap_or(i32::MAX));
    }
    let (mut post_start, mut pre_stop) = (None, None);
    if let (Some(l), false) = (&c.lifecycle, init) {
        post_start = l
            .post_start
            .as_ref()
            .map(|h| map_handler(h, c, at.field("lifecycle").field("postStart")))
            .transpose()?;
        pre_stop = l
            .pre_stop
            .as_ref()
            .map(|h| map_handler(h, c, at.field("lifecycle").field("preStop")))
            .transpose()?;
    }
    Ok(EciContainer {
        name: c.name.clone(),
        image: c.image.clone(),
        command,
        args,
        working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
        cpu: size.cpu_vcpu(),
        memory: size.memory_gib(),
        gpu: (size.gpu > 0).then_some(size.gpu),
        image_pull_policy: c.image_pull_policy.clone(),
        env,
        ports,
        volume_mounts,
        liveness_probe,
        readiness_probe,
        startup_probe: None,
        post_start,
        pre_stop,
        security_context: security_context(c.security_context.as_ref(), pod_sc, at)?,
        stdin: c.stdin,
        stdin_once: c.stdin_once,
        tty: c.tty,
        termination_message_path: c.termination_message_path.clone(),
        termination_message_policy: c.termination_message_policy.clone(),
    })
}

/// Command and args stay separate (`Command.N`, `Arg.N`). ECI takes at most 10 args; with more,
/// and an explicit command, `command ++ args` as the command is exactly what Kubernetes runs,
/// so that is sent. Without a command the image's entrypoint is unknown here: refused.
fn command_and_args(c: &Container, at: At<'_>) -> Result<(Vec<String>, Vec<String>)> {
    if c.args.len() <= MAX_ARGS {
        return Ok((c.command.clone(), c.args.clone()));
    }
    if c.command.is_empty() {
        return Err(invalid(
            at.field("args"),
            format!(
                "{} args given; ECI takes at most {MAX_ARGS}. Set `command` too (then vnode passes command and args \
                 together as the command, which is what Kubernetes runs)",
                c.args.len()
            ),
        ));
    }
    Ok((
        c.command.iter().chain(c.args.iter()).cloned().collect(),
        Vec::new(),
    ))
}

/// ECI's rule for environment variable names: 1-128 of `[A-Za-z0-9_]`, not starting with a digit.
fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.as_bytes()[0].is_ascii_digit()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn map_env(name: &str, value: &EnvValue, at: At<'_>) -> Result<EciEnv> {
    if !valid_env_name(name) {
        return Err(invalid(
            at.field("name"),
            format!(
                "environment variable name {name:?} is not accepted by ECI (1-128 of A-Z a-z 0-9 _, not starting with a digit)"
            ),
        ));
    }
    match value {
        EnvValue::Literal(v) => Ok(EciEnv {
            key: name.to_string(),
            value: Some(v.clone()),
            field_path: None,
        }),
        EnvValue::FieldRef(path) => match eci_field_path(path) {
            Some(p) => Ok(EciEnv {
                key: name.to_string(),
                value: None,
                field_path: Some(p.to_string()),
            }),
            None => Err(unsupported(
                at.field("valueFrom").field("fieldRef"),
                format!(
                    "field {path:?} is only known at run time and ECI can only provide status.podIP"
                ),
            )),
        },
    }
}

/// A named port (`http`) → its number from the container's ports.
fn port_number(port: &IntOrString, c: &Container, at: At<'_>) -> Result<i32> {
    let n = match port {
        IntOrString::Int(n) => *n,
        IntOrString::Str(name) => match name.parse::<i32>() {
            Ok(n) => n,
            Err(_) => c
                .ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| {
                    invalid(
                        at.field("port"),
                        format!("no port named {name:?} in container {:?}", c.name),
                    )
                })?,
        },
    };
    if !(1..=65535).contains(&n) {
        return Err(invalid(
            at.field("port"),
            format!("port {n} is not between 1 and 65535"),
        ));
    }
    Ok(n)
}

fn map_handler(h: &Handler, c: &Container, at: At<'_>) -> Result<EciHandler> {
    Ok(match h {
        Handler::Exec(cmd) => {
            if cmd.is_empty() {
                return Err(invalid(
                    at.field("exec").field("command"),
                    "the command is empty",
                ));
            }
            EciHandler::Exec(cmd.clone())
        }
        Handler::HttpGet(g) => EciHandler::HttpGet(EciHttpGet {
            path: g.path.clone(),
            port: port_number(&g.port, c, at.field("httpGet"))?,
            scheme: g.scheme.clone(),
            host: g.host.clone().filter(|h| !h.is_empty()),
            headers: g
                .headers
                .iter()
                .map(|h| KeyValue {
                    key: h.name.clone(),
                    value: h.value.clone(),
                })
                .collect(),
        }),
        Handler::TcpSocket(t) => EciHandler::TcpSocket(EciTcpSocket {
            port: port_number(&t.port, c, at.field("tcpSocket"))?,
            host: t.host.clone().filter(|h| !h.is_empty()),
        }),
        Handler::Grpc(_) => {
            return Err(unsupported(
                at.field("grpc"),
                "ECI has no gRPC probe; use an exec probe (e.g. grpc_health_probe) or tcpSocket",
            ));
        }
        // ECI has no sleep action; `sleep N` in the container is the same pause, provided the
        // image has a `sleep` binary (if not, the hook fails and termination simply goes on).
        Handler::Sleep(secs) => EciHandler::Exec(vec![
            "sleep".to_string(),
            itoa::Buffer::new().format(*secs).to_string(),
        ]),
    })
}

fn map_probe(p: &Probe, c: &Container, at: At<'_>) -> Result<EciProbe> {
    if matches!(p.handler, Handler::Sleep(_)) {
        return Err(invalid(at, "a probe cannot be a sleep action"));
    }
    let mut handler = map_handler(&p.handler, c, at)?;
    // ECI probes take path, port and scheme only: a custom Host header or other headers cannot
    // be sent, so the probe goes to the pod IP without them.
    if let EciHandler::HttpGet(g) = &mut handler {
        g.host = None;
        g.headers.clear();
    }
    Ok(EciProbe {
        handler,
        initial_delay_seconds: p.initial_delay_seconds,
        period_seconds: p.period_seconds,
        timeout_seconds: p.timeout_seconds,
        success_threshold: p.success_threshold,
        failure_threshold: p.failure_threshold,
    })
}

/// The container's security context, with the pod-level user/group/non-root settings filled in
/// where the container sets none (Kubernetes precedence). Privileged containers are refused:
/// ECI instances are shared-kernel sandboxes that cannot grant full host privileges.
/// `capabilities.drop`, `allowPrivilegeEscalation`, `fsGroup` and `supplementalGroups` have no
/// ECI equivalent and are not sent.
fn security_context(
    sc: Option<&SecurityContext>,
    pod: Option<&PodSecurityContext>,
    at: At<'_>,
) -> Result<Option<EciSecurityContext>> {
    if let Some(true) = sc.and_then(|s| s.privileged) {
        return Err(unsupported(
            at.field("securityContext").field("privileged"),
            "privileged containers cannot run on ECI",
        ));
    }
    let out = EciSecurityContext {
        capabilities_add: sc.map(|s| s.capabilities_add.clone()).unwrap_or_default(),
        read_only_root_filesystem: sc.and_then(|s| s.read_only_root_filesystem),
        run_as_user: sc
            .and_then(|s| s.run_as_user)
            .or(pod.and_then(|p| p.run_as_user)),
        run_as_group: sc
            .and_then(|s| s.run_as_group)
            .or(pod.and_then(|p| p.run_as_group)),
        run_as_non_root: sc
            .and_then(|s| s.run_as_non_root)
            .or(pod.and_then(|p| p.run_as_non_root)),
        privileged: None,
    };
    let empty = out.capabilities_add.is_empty()
        && out.read_only_root_filesystem.is_none()
        && out.run_as_user.is_none()
        && out.run_as_group.is_none()
        && out.run_as_non_root.is_none();
    Ok((!empty).then_some(out))
}
