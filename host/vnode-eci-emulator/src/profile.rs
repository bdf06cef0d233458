//! The behaviour profile: how the emulated world behaves. Loaded from YAML (see
//! `PROFILE.md`); every field has a default, so an empty file is the default world.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::EmulatorError;

/// How the emulated world behaves: timings, workloads, stock, spot, faults, quotas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Profile {
    /// Region served (`RegionId` must match).
    pub region_id: String,
    /// Zones of the region; groups without a `ZoneId` land in the first one with stock.
    pub zones: Vec<String>,
    /// Lifecycle delays.
    pub timing: Timing,
    /// Workload rules: what a container does, matched on image and command. First match
    /// wins; unmatched containers fall back to the built-in rules (see `PROFILE.md`).
    pub workloads: Vec<WorkloadRule>,
    /// Stock: which zones/specs are sold out.
    pub stock: Stock,
    /// Spot instances.
    pub spot: Spot,
    /// Injected faults.
    pub faults: Vec<FaultRule>,
    /// Per-minute quota overrides by action name (e.g. `CreateContainerGroup: 10`).
    pub quotas: std::collections::BTreeMap<String, u32>,
}

impl Default for Profile {
    fn default() -> Self {
        Self {
            region_id: "cn-hangzhou".into(),
            zones: vec![
                "cn-hangzhou-h".into(),
                "cn-hangzhou-i".into(),
                "cn-hangzhou-k".into(),
            ],
            timing: Timing::default(),
            workloads: Vec::new(),
            stock: Stock::default(),
            spot: Spot::default(),
            faults: Vec::new(),
            quotas: Default::default(),
        }
    }
}

impl Profile {
    /// Loads a profile from a YAML file.
    pub fn from_file(path: &Path) -> Result<Self, EmulatorError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| EmulatorError::Profile(format!("reading {}: {e}", path.display())))?;
        Self::from_yaml(&text)
            .map_err(|e| EmulatorError::Profile(format!("{}: {e}", path.display())))
    }

    /// Parses a profile from YAML text.
    pub fn from_yaml(text: &str) -> Result<Self, EmulatorError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let p: Profile =
            serde_yaml::from_str(text).map_err(|e| EmulatorError::Profile(e.to_string()))?;
        if p.zones.is_empty() {
            return Err(EmulatorError::Profile("zones must not be empty".into()));
        }
        for f in &p.faults {
            if !(0.0..=1.0).contains(&f.rate) {
                return Err(EmulatorError::Profile(format!(
                    "fault rate {} is not within 0..=1",
                    f.rate
                )));
            }
        }
        Ok(p)
    }

    /// A profile where everything happens at once (benchmarks).
    pub fn instant() -> Self {
        Self {
            timing: Timing {
                instant: true,
                ..Timing::default()
            },
            ..Self::default()
        }
    }
}

/// Lifecycle delays in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timing {
    /// Everything at once: groups are `Running` as soon as they are created.
    pub instant: bool,
    /// `Scheduling` → `Pending`.
    pub scheduling_ms: u64,
    /// `Pending` (image pull) → containers start.
    pub pulling_ms: u64,
    /// How long an init container without a workload rule runs.
    pub init_container_ms: u64,
    /// Back-off between container restarts.
    pub restart_backoff_ms: u64,
    /// `Restarting` duration.
    pub restarting_ms: u64,
    /// `Updating` duration.
    pub updating_ms: u64,
    /// `Terminating` duration for groups with preStop hooks.
    pub terminating_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            instant: false,
            scheduling_ms: 400,
            pulling_ms: 800,
            init_container_ms: 300,
            restart_backoff_ms: 1000,
            restarting_ms: 500,
            updating_ms: 500,
            terminating_ms: 1000,
        }
    }
}

/// What a matching container does.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkloadRule {
    /// Substring of the image (empty matches all).
    pub image: String,
    /// Substring of `command + args` joined by spaces (empty matches all).
    pub command_contains: String,
    /// Behaviour.
    #[serde(flatten)]
    pub behaviour: Behaviour,
}

/// A container's simulated behaviour.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Behaviour {
    /// Exit after this many ms; `None` runs until deleted.
    pub exit_after_ms: Option<u64>,
    /// Exit code when it exits.
    pub exit_code: i64,
    /// Lines logged at start.
    pub log_lines: Vec<String>,
    /// Log a line every this many ms while running (`None` = never).
    pub log_every_ms: Option<u64>,
    /// Template of the periodic line: `{n}` = sequence number, `{time}` = RFC 3339 time.
    pub log_template: String,
}

/// Sold-out zones and specs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Stock {
    /// Zones with no stock at all.
    pub out_of_stock_zones: Vec<String>,
    /// Specs with no stock anywhere: `<cpu>-<memory>` after rounding (e.g. `64-512`) or an
    /// instance type.
    pub out_of_stock_specs: Vec<String>,
    /// Report no-stock asynchronously (group goes `ScheduleFailed`) instead of failing the
    /// create call with `OperationDenied.NoStock`.
    pub asynchronous: bool,
}

/// Spot behaviour.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Spot {
    /// Spot groups are reclaimed (→ `Expired`) this many ms after they start running.
    pub reclaim_after_ms: Option<u64>,
}

/// A fault injected into matching requests (after authentication).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultRule {
    /// Action names it applies to (empty = all).
    pub actions: Vec<String>,
    /// What happens.
    pub kind: FaultKind,
    /// Probability per matching request (0..=1); ignored when `first` is set.
    pub rate: f64,
    /// Inject into exactly the first N matching requests (deterministic, for tests).
    pub first: Option<u64>,
    /// `error`: the code to answer with (default `InternalError`).
    pub code: Option<String>,
    /// `error`: the HTTP status (default 500).
    pub status: Option<u16>,
    /// `latency`/`timeout`: the delay in ms (default 3000).
    pub delay_ms: Option<u64>,
}

/// The kind of an injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with an error envelope instead of acting.
    #[default]
    Error,
    /// Act, then hold the response for `delay_ms` (a client timeout after a side effect).
    Timeout,
    /// Add `delay_ms` of latency before acting.
    Latency,
}

/// Long-running server images: run until deleted and log access lines.
const SERVER_IMAGES: &[&str] = &[
    "nginx",
    "httpd",
    "apache",
    "redis",
    "memcached",
    "envoy",
    "caddy",
    "traefik",
    "haproxy",
    "postgres",
    "mysql",
];

/// Resolves what a container does: profile rules first, then the command, then the image.
pub fn resolve_behaviour(
    profile: &Profile,
    image: &str,
    command: &[String],
    args: &[String],
) -> Behaviour {
    let joined: String = command
        .iter()
        .chain(args.iter())
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    for rule in &profile.workloads {
        if image.contains(&rule.image) && joined.contains(&rule.command_contains) {
            return rule.behaviour.clone();
        }
    }
    if !joined.is_empty() {
        return behaviour_from_command(&joined);
    }
    let base = image.rsplit('/').next().unwrap_or(image);
    if base.starts_with("pause") {
        return Behaviour::default();
    }
    if SERVER_IMAGES.iter().any(|s| base.starts_with(s)) {
        return Behaviour {
            log_lines: vec![
                format!("{base}: configuration complete; ready for start up"),
                format!("{base}: start worker processes"),
            ],
            log_every_ms: Some(2000),
            log_template:
                "10.0.0.{n} - - [{time}] \"GET / HTTP/1.1\" 200 615 \"-\" \"kube-probe/1.33\""
                    .into(),
            ..Behaviour::default()
        };
    }
    if ["busybox", "alpine", "ubuntu", "debian"]
        .iter()
        .any(|s| base.starts_with(s))
    {
        // The default shell of these images exits at once without a terminal.
        return Behaviour {
            exit_after_ms: Some(500),
            ..Behaviour::default()
        };
    }
    Behaviour {
        log_lines: vec![format!("{base} started")],
        ..Behaviour::default()
    }
}

/// A tiny reading of shell commands: `echo X` logs X, `sleep N` runs N seconds, `exit N`
/// sets the exit code, `sleep infinity` (or `tail -f`) runs forever; any other command is
/// a job that finishes successfully after a second.
fn behaviour_from_command(joined: &str) -> Behaviour {
    let mut b = Behaviour {
        exit_after_ms: Some(1000),
        ..Behaviour::default()
    };
    let mut sleep_total: Option<u64> = None;
    let tokens: Vec<&str> = joined
        .split([' ', ';', '&', '|', '\n'])
        .filter(|t| !t.is_empty())
        .collect();
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i] {
            "sleep" => {
                if let Some(arg) = tokens.get(i + 1) {
                    if *arg == "infinity" {
                        b.exit_after_ms = None;
                        return b;
                    }
                    if let Ok(secs) = arg.parse::<f64>() {
                        sleep_total = Some(sleep_total.unwrap_or(0) + (secs * 1000.0) as u64);
                    }
                }
            }
            "exit" => {
                if let Some(code) = tokens.get(i + 1).and_then(|c| c.parse::<i64>().ok()) {
                    b.exit_code = code;
                }
            }
            "-f" if i > 0 && tokens[i - 1] == "tail" => {
                b.exit_after_ms = None;
                return b;
            }
            _ => {}
        }
        i += 1;
    }
    for segment in joined.split([';', '\n']).flat_map(|s| s.split("&&")) {
        let seg = segment.trim();
        let words: Vec<&str> = seg.split_whitespace().collect();
        if let Some(pos) = words.iter().position(|w| *w == "echo") {
            let text = words[pos + 1..].join(" ");
            b.log_lines.push(text.trim_matches(['"', '\'']).to_string());
        }
    }
    if let Some(ms) = sleep_total {
        b.exit_after_ms = Some(ms.max(1));
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn default_world() {
        let p = Profile::default();
        let nginx = resolve_behaviour(&p, "nginx:1.25", &[], &[]);
        assert_eq!(nginx.exit_after_ms, None);
        assert!(nginx.log_every_ms.is_some());
        let job = resolve_behaviour(
            &p,
            "busybox",
            &cmd(&["sh", "-c"]),
            &cmd(&["echo hello; exit 3"]),
        );
        assert_eq!(job.exit_code, 3);
        assert_eq!(job.log_lines, vec!["hello"]);
        assert!(job.exit_after_ms.is_some());
        let sleeper = resolve_behaviour(&p, "busybox", &cmd(&["sleep", "infinity"]), &[]);
        assert_eq!(sleeper.exit_after_ms, None);
        let timed = resolve_behaviour(&p, "busybox", &cmd(&["sleep", "2"]), &[]);
        assert_eq!(timed.exit_after_ms, Some(2000));
    }

    #[test]
    fn profile_rules_win_and_yaml_parses() {
        let p = Profile::from_yaml(
            "workloads:\n  - image: crash\n    exit_after_ms: 100\n    exit_code: 2\nstock:\n  out_of_stock_zones: [cn-hangzhou-k]\n",
        )
        .expect("valid yaml");
        let b = resolve_behaviour(&p, "example/crash:1", &[], &[]);
        assert_eq!((b.exit_after_ms, b.exit_code), (Some(100), 2));
        assert_eq!(p.stock.out_of_stock_zones, vec!["cn-hangzhou-k"]);
        assert!(Profile::from_yaml("bogus_field: 1").is_err());
        assert_eq!(
            Profile::from_yaml("").expect("empty is default"),
            Profile::default()
        );
    }
}
