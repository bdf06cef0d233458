//! The simulated world: container groups, their lifecycle in (wall-clock) time, container
//! states, events and logs.
//!
//! Nothing runs in the background: a group stores the moments that define its lifecycle
//! (scheduled, containers started, transitions, overrides) and every read evaluates the
//! state *at that moment*. This keeps 100k groups cheap, makes `instant` timing exact, and
//! lets the state file round-trip without timers.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use vnode_eci::model::{ContainerGroupStatus, CreateContainerGroupRequest, RestartPolicy};

use crate::profile::{Behaviour, Timing};

/// One simulated container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimContainer {
    /// Name.
    pub name: String,
    /// Image.
    pub image: String,
    /// What it does.
    pub behaviour: Behaviour,
    /// Restarts carried over from before the last `RestartContainerGroup`.
    pub restart_base: i64,
}

/// A timed lifecycle transition (`Restarting`, `Updating`, `Terminating`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Transition {
    /// Status while it lasts.
    pub status: String,
    /// Start.
    pub from: Timestamp,
    /// End.
    pub until: Timestamp,
}

/// A terminal state imposed at a moment (spot reclaim, deadline).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Override {
    /// When.
    pub at: Timestamp,
    /// `Expired` or `Failed`.
    pub status: String,
    /// Container reason, e.g. `DeadlineExceeded`.
    pub reason: String,
}

/// An event recorded by an API call (restart, update, kill).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// When.
    pub at: Timestamp,
    /// `Normal` / `Warning`.
    pub kind: String,
    /// Reason.
    pub reason: String,
    /// Message.
    pub message: String,
}

/// A container group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Group {
    /// Creation order (paging key).
    pub seq: u64,
    /// `eci-…`.
    pub id: String,
    /// The current spec (after updates).
    pub spec: CreateContainerGroupRequest,
    /// Zone.
    pub zone: String,
    /// vSwitch.
    pub vswitch: String,
    /// Security group.
    pub security_group: String,
    /// VPC.
    pub vpc: String,
    /// Pod IP.
    pub ip: String,
    /// Effective vCPUs.
    pub cpu: f64,
    /// Effective GiB.
    pub memory: f64,
    /// Instance type, if one was asked for.
    pub instance_type: String,
    /// Created.
    pub created_at: Timestamp,
    /// Scheduling ended.
    pub scheduled_at: Timestamp,
    /// Init containers start (image pulled).
    pub init_epoch: Timestamp,
    /// Containers (re)start.
    pub run_epoch: Timestamp,
    /// Why scheduling failed (async no-stock).
    pub schedule_failed: Option<String>,
    /// An init container fails at this moment.
    pub init_failed_at: Option<Timestamp>,
    /// In-flight transition.
    pub transition: Option<Transition>,
    /// Imposed terminal states.
    pub overrides: Vec<Override>,
    /// Removed from the world at this moment (after `Terminating`).
    pub delete_at: Option<Timestamp>,
    /// Containers.
    pub containers: Vec<SimContainer>,
    /// Init containers.
    pub init_containers: Vec<SimContainer>,
    /// Events recorded by API calls.
    pub events: Vec<RecordedEvent>,
}

/// How a container looks at a moment.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerView {
    /// `Waiting` / `Running` / `Terminated`.
    pub state: &'static str,
    /// Reason.
    pub reason: String,
    /// Exit code (Terminated).
    pub exit_code: i64,
    /// Current attempt start.
    pub started: Option<Timestamp>,
    /// Current attempt end.
    pub finished: Option<Timestamp>,
    /// Restarts.
    pub restart_count: i64,
    /// The previous attempt (start, end, exit code).
    pub previous: Option<(Timestamp, Timestamp, i64)>,
    /// When the container reached a state it will never leave.
    pub final_at: Option<Timestamp>,
    /// Last state change.
    pub last_change: Timestamp,
}

fn ms(n: u64) -> SignedDuration {
    SignedDuration::from_millis(n.min(i64::MAX as u64) as i64)
}

/// Evaluates a container at `now` given the moment its first attempt started.
pub fn container_view(
    b: &Behaviour,
    policy: RestartPolicy,
    epoch: Timestamp,
    now: Timestamp,
    backoff_ms: u64,
) -> ContainerView {
    let waiting = |reason: &str, last_change: Timestamp| ContainerView {
        state: "Waiting",
        reason: reason.into(),
        exit_code: 0,
        started: None,
        finished: None,
        restart_count: 0,
        previous: None,
        final_at: None,
        last_change,
    };
    if now < epoch {
        return waiting("ContainerCreating", epoch);
    }
    let Some(run) = b.exit_after_ms else {
        return ContainerView {
            state: "Running",
            reason: "Started".into(),
            started: Some(epoch),
            last_change: epoch,
            ..waiting("", epoch)
        };
    };
    let run = ms(run.max(1));
    let restarts = match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => b.exit_code != 0,
        RestartPolicy::Never => false,
    };
    let exit_reason = if b.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    if !restarts {
        let end = epoch + run;
        if now < end {
            return ContainerView {
                state: "Running",
                reason: "Started".into(),
                started: Some(epoch),
                ..waiting("", epoch)
            };
        }
        return ContainerView {
            state: "Terminated",
            reason: exit_reason.into(),
            exit_code: b.exit_code,
            started: Some(epoch),
            finished: Some(end),
            restart_count: 0,
            previous: None,
            final_at: Some(end),
            last_change: end,
        };
    }
    let period = run + ms(backoff_ms.max(1));
    let elapsed = now.duration_since(epoch).as_millis();
    let n = (elapsed / period.as_millis().max(1)) as i64;
    let attempt_start =
        epoch + SignedDuration::from_millis((period.as_millis() as i64).saturating_mul(n));
    let previous = (n > 0).then(|| {
        let s = attempt_start - period;
        (s, s + run, b.exit_code)
    });
    if now < attempt_start + run {
        ContainerView {
            state: "Running",
            reason: "Started".into(),
            exit_code: 0,
            started: Some(attempt_start),
            finished: None,
            restart_count: n,
            previous,
            final_at: None,
            last_change: attempt_start,
        }
    } else {
        let end = attempt_start + run;
        ContainerView {
            state: "Waiting",
            reason: "CrashLoopBackOff".into(),
            exit_code: 0,
            started: None,
            finished: None,
            restart_count: n + 1,
            previous: Some((attempt_start, end, b.exit_code)),
            final_at: None,
            last_change: end,
        }
    }
}

/// A group's status at a moment, with the moment it last changed.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupView {
    /// Status.
    pub status: ContainerGroupStatus,
    /// When the group entered it (or a container last changed state).
    pub changed_at: Timestamp,
    /// Terminal moment, if terminal.
    pub terminal_at: Option<Timestamp>,
    /// Containers, evaluated at `min(now, terminal_at)`.
    pub containers: Vec<ContainerView>,
    /// Init containers.
    pub init_containers: Vec<ContainerView>,
    /// Reason imposed on still-running containers by an override.
    pub override_reason: Option<String>,
}

impl Group {
    /// The restart policy in force.
    pub fn policy(&self) -> RestartPolicy {
        self.spec.restart_policy.unwrap_or_default()
    }

    /// Whether the group has been removed by `now`.
    pub fn is_gone(&self, now: Timestamp) -> bool {
        self.delete_at.is_some_and(|t| now >= t)
    }

    fn init_views(&self, now: Timestamp, timing: &Timing) -> Vec<ContainerView> {
        let mut t = self.init_epoch;
        self.init_containers
            .iter()
            .map(|c| {
                let run = c
                    .behaviour
                    .exit_after_ms
                    .unwrap_or(timing.init_container_ms);
                let b = Behaviour {
                    exit_after_ms: Some(run),
                    ..c.behaviour.clone()
                };
                let v = container_view(&b, RestartPolicy::Never, t, now, timing.restart_backoff_ms);
                t += ms(run.max(1));
                v
            })
            .collect()
    }

    /// Evaluates the group at `now`.
    pub fn view(&self, now: Timestamp, timing: &Timing) -> GroupView {
        let base = |status: ContainerGroupStatus, changed_at: Timestamp| GroupView {
            status,
            changed_at,
            terminal_at: None,
            containers: Vec::new(),
            init_containers: Vec::new(),
            override_reason: None,
        };
        if let Some(t) = &self.transition
            && t.status == "Terminating"
            && now >= t.from
        {
            let mut v = self.running_view(now, timing);
            v.status = ContainerGroupStatus::Terminating;
            v.changed_at = t.from;
            return v;
        }
        if now < self.scheduled_at {
            let mut v = base(ContainerGroupStatus::Scheduling, self.created_at);
            v.containers = self
                .containers
                .iter()
                .map(|_| waiting_view("Scheduling", self.created_at))
                .collect();
            v.init_containers = self
                .init_containers
                .iter()
                .map(|_| waiting_view("Scheduling", self.created_at))
                .collect();
            return v;
        }
        if self.schedule_failed.is_some() {
            let mut v = base(ContainerGroupStatus::ScheduleFailed, self.scheduled_at);
            v.terminal_at = Some(self.scheduled_at);
            v.containers = self
                .containers
                .iter()
                .map(|_| waiting_view("ScheduleFailed", self.scheduled_at))
                .collect();
            return v;
        }
        self.running_view(now, timing)
    }

    fn running_view(&self, now: Timestamp, timing: &Timing) -> GroupView {
        // Terminal candidates: overrides, an init failure, all containers done.
        let mut terminal: Option<(Timestamp, ContainerGroupStatus, Option<String>)> = None;
        let mut consider = |at: Timestamp, status: ContainerGroupStatus, reason: Option<String>| {
            if at <= now && terminal.as_ref().is_none_or(|(t, _, _)| at < *t) {
                terminal = Some((at, status, reason));
            }
        };
        for o in &self.overrides {
            consider(
                o.at,
                ContainerGroupStatus::parse(&o.status),
                Some(o.reason.clone()),
            );
        }
        if let Some(t) = self.init_failed_at {
            consider(t, ContainerGroupStatus::Failed, None);
        }
        let policy = self.policy();
        let natural_views: Vec<ContainerView> = self
            .containers
            .iter()
            .map(|c| {
                container_view(
                    &c.behaviour,
                    policy,
                    self.run_epoch,
                    now,
                    timing.restart_backoff_ms,
                )
            })
            .collect();
        if !natural_views.is_empty() && natural_views.iter().all(|v| v.final_at.is_some()) {
            let at = natural_views
                .iter()
                .filter_map(|v| v.final_at)
                .max()
                .unwrap_or(self.run_epoch);
            let ok = natural_views.iter().all(|v| v.exit_code == 0);
            consider(
                at,
                if ok {
                    ContainerGroupStatus::Succeeded
                } else {
                    ContainerGroupStatus::Failed
                },
                None,
            );
        }
        let eval_at = terminal
            .as_ref()
            .map(|(t, _, _)| *t)
            .unwrap_or(now)
            .min(now);
        let mut containers: Vec<ContainerView> = self
            .containers
            .iter()
            .zip(natural_views)
            .map(|(c, natural)| {
                let mut v = if eval_at == now {
                    natural
                } else {
                    container_view(
                        &c.behaviour,
                        policy,
                        self.run_epoch,
                        eval_at,
                        timing.restart_backoff_ms,
                    )
                };
                v.restart_count += c.restart_base;
                v
            })
            .collect();
        let init_containers = self.init_views(eval_at, timing);
        let last_container_change = containers
            .iter()
            .map(|v| v.last_change)
            .filter(|t| *t <= now)
            .max()
            .unwrap_or(self.run_epoch);
        if let Some((at, status, reason)) = terminal {
            if let Some(r) = &reason {
                for v in containers.iter_mut().filter(|v| v.state != "Terminated") {
                    *v = ContainerView {
                        state: "Terminated",
                        reason: r.clone(),
                        exit_code: 137,
                        started: v.started,
                        finished: Some(at),
                        restart_count: v.restart_count,
                        previous: v.previous,
                        final_at: Some(at),
                        last_change: at,
                    };
                }
            }
            return GroupView {
                status,
                changed_at: at,
                terminal_at: Some(at),
                containers,
                init_containers,
                override_reason: reason,
            };
        }
        if let Some(t) = &self.transition
            && now >= t.from
            && now < t.until
        {
            return GroupView {
                status: ContainerGroupStatus::parse(&t.status),
                changed_at: t.from,
                terminal_at: None,
                containers,
                init_containers,
                override_reason: None,
            };
        }
        if now < self.run_epoch {
            let since = self
                .transition
                .as_ref()
                .map(|t| t.until)
                .unwrap_or(self.scheduled_at)
                .min(now);
            let reason = if self.init_containers.is_empty() {
                "ContainerCreating"
            } else {
                "PodInitializing"
            };
            return GroupView {
                status: ContainerGroupStatus::Pending,
                changed_at: init_containers
                    .iter()
                    .map(|v| v.last_change)
                    .filter(|t| *t <= now)
                    .max()
                    .unwrap_or(since)
                    .max(since),
                terminal_at: None,
                containers: self
                    .containers
                    .iter()
                    .map(|_| waiting_view(reason, since))
                    .collect(),
                init_containers,
                override_reason: None,
            };
        }
        GroupView {
            status: ContainerGroupStatus::Running,
            changed_at: last_container_change.max(self.run_epoch),
            terminal_at: None,
            containers,
            init_containers,
            override_reason: None,
        }
    }
}

fn waiting_view(reason: &str, at: Timestamp) -> ContainerView {
    ContainerView {
        state: "Waiting",
        reason: reason.into(),
        exit_code: 0,
        started: None,
        finished: None,
        restart_count: 0,
        previous: None,
        final_at: None,
        last_change: at,
    }
}

/// One log line.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// When it was written.
    pub at: Timestamp,
    /// Text without newline.
    pub text: String,
}

/// The lines an attempt `[start, end)` wrote that are `>= since`, at most the last `tail`.
pub fn attempt_logs(
    b: &Behaviour,
    start: Timestamp,
    end: Timestamp,
    since: Option<Timestamp>,
    tail: usize,
) -> Vec<LogLine> {
    let mut lines: Vec<LogLine> = b
        .log_lines
        .iter()
        .enumerate()
        .map(|(i, text)| LogLine {
            at: start + SignedDuration::from_millis(i as i64),
            text: text.clone(),
        })
        .filter(|l| l.at < end || l.at == start)
        .collect();
    if let Some(every) = b.log_every_ms.filter(|e| *e > 0) {
        let span = end.duration_since(start).as_millis().max(0) as u64;
        let total = span / every; // lines at start + k*every, k = 1..=total, strictly before end
        let total = if total > 0 && span.is_multiple_of(every) {
            total - 1
        } else {
            total
        };
        let mut first = total.saturating_sub(tail as u64) + 1;
        if let Some(s) = since {
            let from = s.duration_since(start).as_millis().max(0) as u64;
            first = first.max(from.div_ceil(every).max(1));
        }
        for k in first..=total {
            let at = start + ms(k * every);
            let time = at.strftime("%d/%b/%Y:%H:%M:%S +0000").to_string();
            let text = b
                .log_template
                .replace("{n}", &k.to_string())
                .replace("{time}", &time);
            lines.push(LogLine { at, text });
        }
    }
    if let Some(s) = since {
        lines.retain(|l| l.at >= s);
    }
    let skip = lines.len().saturating_sub(tail);
    lines.split_off(skip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms_: i64) -> Timestamp {
        Timestamp::from_millisecond(1_700_000_000_000 + ms_).expect("valid")
    }

    #[test]
    fn forever_running() {
        let v = container_view(
            &Behaviour::default(),
            RestartPolicy::Always,
            t(0),
            t(5000),
            1000,
        );
        assert_eq!(v.state, "Running");
        assert_eq!(v.restart_count, 0);
    }

    #[test]
    fn job_completes_under_never() {
        let b = Behaviour {
            exit_after_ms: Some(1000),
            exit_code: 0,
            ..Default::default()
        };
        let v = container_view(&b, RestartPolicy::Never, t(0), t(500), 1000);
        assert_eq!(v.state, "Running");
        let v = container_view(&b, RestartPolicy::Never, t(0), t(1500), 1000);
        assert_eq!(
            (v.state, v.exit_code, v.final_at),
            ("Terminated", 0, Some(t(1000)))
        );
    }

    #[test]
    fn crash_loop_counts_restarts() {
        let b = Behaviour {
            exit_after_ms: Some(1000),
            exit_code: 2,
            ..Default::default()
        };
        // period = 2000 ms: attempt 0 runs 0..1000, waits, attempt 1 runs 2000..3000, …
        let v = container_view(&b, RestartPolicy::Always, t(0), t(2500), 1000);
        assert_eq!((v.state, v.restart_count), ("Running", 1));
        assert_eq!(v.previous, Some((t(0), t(1000), 2)));
        let v = container_view(&b, RestartPolicy::OnFailure, t(0), t(3500), 1000);
        assert_eq!(
            (v.state, v.reason.as_str(), v.restart_count),
            ("Waiting", "CrashLoopBackOff", 2)
        );
        // OnFailure with exit 0 does not restart.
        let ok = Behaviour { exit_code: 0, ..b };
        let v = container_view(&ok, RestartPolicy::OnFailure, t(0), t(3500), 1000);
        assert_eq!(v.state, "Terminated");
    }

    #[test]
    fn logs_tail_and_since() {
        let b = Behaviour {
            log_lines: vec!["start".into()],
            log_every_ms: Some(1000),
            log_template: "line {n}".into(),
            ..Default::default()
        };
        let all = attempt_logs(&b, t(0), t(10_500), None, 2000);
        assert_eq!(all.len(), 11);
        assert_eq!(all[0].text, "start");
        assert_eq!(all[10].text, "line 10");
        let tail = attempt_logs(&b, t(0), t(10_500), None, 3);
        assert_eq!(
            tail.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
            vec!["line 8", "line 9", "line 10"]
        );
        let since = attempt_logs(&b, t(0), t(10_500), Some(t(8_000)), 500);
        assert_eq!(
            since.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
            vec!["line 8", "line 9", "line 10"]
        );
    }
}
