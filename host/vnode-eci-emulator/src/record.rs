//! Optional call recording for benchmarks (`EmulatorConfig::record_calls`,
//! `vnode eci-emulator --record-calls`), served as JSON at [`STATS_PATH`].
//!
//! Two things a benchmark cannot see from the outside: how many calls of each action the
//! client made and how they ended (counted here, by action and outcome code), and the
//! moments of each container group's life on the emulator's own clock (created, containers
//! start = `Running`, deletion accepted). Both are kept only when recording is on, so a
//! long-running `vnode dev` does not grow a log.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::sim::Group;

/// Path of the recording endpoint (`GET`, JSON [`CallStats`]); 404 when recording is off.
pub const STATS_PATH: &str = "/_emulator/stats";

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

#[derive(Default)]
pub(crate) struct Recorder {
    calls: Mutex<BTreeMap<(String, String), u64>>,
    groups: Mutex<(Vec<GroupRecord>, HashMap<String, usize>, u64)>,
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
