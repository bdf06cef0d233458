//! Optional call recording for benchmarks (`EmulatorConfig::record_calls`,
//! `vnode eci-emulator --record-calls`), served as JSON at [`STATS_PATH`].
//!
//! Three things a benchmark cannot see from the outside: how many calls of each action the
//! client made and how they ended (counted here, by action and outcome code), the moments
//! of each container group's life on the emulator's own clock (created, containers
//! start = `Running`, deletion accepted), and when each call was received and answered
//! (served separately at [`CALLS_PATH`], so the emulator's own response time under a
//! benchmark is known). All are kept only when recording is on, so a long-running
//! `vnode dev` does not grow a log.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::sim::Group;

/// Path of the recording endpoint (`GET`, JSON [`CallStats`]); 404 when recording is off.
pub const STATS_PATH: &str = "/_emulator/stats";

/// Path of the per-call timing record (`GET`, JSON [`CallTimings`]); 404 when recording
/// is off. Apart from [`STATS_PATH`] because it grows with every call and benchmarks poll
/// the stats.
pub const CALLS_PATH: &str = "/_emulator/calls";

/// Outcome label of a successful call.
pub const OUTCOME_OK: &str = "ok";

/// Calls of one action that ended with one outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallCount {
    /// ECI action name, or `unknown` when the request was refused before naming one.
    pub action: String,
    /// [`OUTCOME_OK`] or the error code (e.g. `Throttling.User`).
    pub outcome: String,
    /// Number of calls.
    pub count: u64,
}

/// One container group's life on the emulator's clock (microseconds since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// `eci-…`.
    pub id: String,
    /// Value of the `vnode.io/pod-uid` tag, if any.
    pub pod_uid: Option<String>,
    /// Value of the `vnode.io/node` tag, if any.
    pub node: Option<String>,
    /// When the `CreateContainerGroup` that made it was handled.
    pub created_us: i64,
    /// When its containers start (the group turns `Running` if nothing fails first).
    pub running_us: i64,
    /// When a `DeleteContainerGroup` for it was accepted.
    pub deleted_us: Option<i64>,
}

/// Everything recorded so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CallStats {
    /// Calls by action and outcome.
    pub calls: Vec<CallCount>,
    /// Every group created since the start, in creation order.
    pub groups: Vec<GroupRecord>,
    /// `CreateContainerGroup` calls answered from a ClientToken replay (no new group).
    pub create_replays: u64,
}

/// One call's moments on the emulator's clock (microseconds since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallTiming {
    /// ECI action name, or `unknown` when the request was refused before naming one.
    pub action: String,
    /// [`OUTCOME_OK`] or the error code.
    pub outcome: String,
    /// When the request reached the handler (its body read).
    pub received_us: i64,
    /// When the response was built (after any delay a fault rule injects).
    pub answered_us: i64,
}

/// Every call recorded so far, in the order they were answered.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CallTimings {
    /// One entry per call.
    pub calls: Vec<CallTiming>,
}

/// A call as kept in memory: the action's static name, the error code if any.
struct TimedCall {
    action: &'static str,
    error: Option<Box<str>>,
    received_us: i64,
    answered_us: i64,
}

#[derive(Default)]
pub(crate) struct Recorder {
    calls: Mutex<BTreeMap<(String, String), u64>>,
    groups: Mutex<(Vec<GroupRecord>, HashMap<String, usize>, u64)>,
    timings: Mutex<Vec<TimedCall>>,
}

fn micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

fn tag(group: &Group, key: &str) -> Option<String> {
    group
        .spec
        .tags
        .iter()
        .find(|t| t.key == key)
        .map(|t| t.value.clone())
}

impl Recorder {
    pub(crate) fn count(&self, action: &str, outcome: &str) {
        *self
            .calls
            .lock()
            .entry((action.to_string(), outcome.to_string()))
            .or_insert(0) += 1;
    }

    /// One call's timing; `error` is its error code, `None` when it succeeded.
    pub(crate) fn timed(
        &self,
        action: &'static str,
        error: Option<&str>,
        received: Timestamp,
        answered: Timestamp,
    ) {
        let call = TimedCall {
            action,
            error: error.map(Box::from),
            received_us: micros(received),
            answered_us: micros(answered),
        };
        self.timings.lock().push(call);
    }

    /// A create succeeded with `group`: a new record, or a replay if the id is known.
    pub(crate) fn created(&self, group: &Group) {
        let mut g = self.groups.lock();
        let (records, index, replays) = &mut *g;
        if index.contains_key(&group.id) {
            *replays += 1;
            return;
        }
        index.insert(group.id.clone(), records.len());
        records.push(GroupRecord {
            id: group.id.clone(),
            pod_uid: tag(group, "vnode.io/pod-uid"),
            node: tag(group, "vnode.io/node"),
            created_us: micros(group.created_at),
            running_us: micros(group.run_epoch),
            deleted_us: None,
        });
    }

    /// A delete of `id` was accepted at `at`.
    pub(crate) fn deleted(&self, id: &str, at: Timestamp) {
        let mut g = self.groups.lock();
        let (records, index, _) = &mut *g;
        if let Some(r) = index.get(id).and_then(|&i| records.get_mut(i))
            && r.deleted_us.is_none()
        {
            r.deleted_us = Some(micros(at));
        }
    }

    pub(crate) fn timings(&self) -> CallTimings {
        let calls = self
            .timings
            .lock()
            .iter()
            .map(|c| CallTiming {
                action: c.action.to_string(),
                outcome: c.error.as_deref().unwrap_or(OUTCOME_OK).to_string(),
                received_us: c.received_us,
                answered_us: c.answered_us,
            })
            .collect();
        CallTimings { calls }
    }

    pub(crate) fn snapshot(&self) -> CallStats {
        let calls = self
            .calls
            .lock()
            .iter()
            .map(|((action, outcome), count)| CallCount {
                action: action.clone(),
                outcome: outcome.clone(),
                count: *count,
            })
            .collect();
        let g = self.groups.lock();
        CallStats {
            calls,
            groups: g.0.clone(),
            create_replays: g.2,
        }
    }
}
