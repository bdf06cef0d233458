//! The reconcile rules as pure functions: what a *complete* listing of this node's container
//! groups means for each group and each pod. The observer does the I/O (listing, the direct
//! pod GET, the confirming describe) and calls these to decide.
//!
//! Rules (the README's "Reconcile rules" section says the same for operators):
//!
//! 1. Only a complete listing is ever judged; a failed or partial one changes nothing.
//! 2. Nothing is judged before the pod store has its first full listing.
//! 3. A group whose pod UID is in the pod store is kept (adopted into the index).
//! 4. A group whose pod UID is not in the store is an orphan *candidate* only when it is older
//!    than the minimum age; then a direct GET of the pod (namespace/name from the tags) must
//!    show the pod gone (404) or replaced (another UID). Anything else (the same UID: the
//!    store is lagging; an error: unknown) keeps the group. Only then is it deleted.
//! 5. Two groups for one pod UID: the one the index or the pod's annotation names is kept;
//!    the others are duplicates, deleted once older than the minimum age.
//! 6. A pod whose annotation names a group that the complete listing does not contain, and
//!    for which no newer group was recorded since the listing started, is a *vanished*
//!    candidate; a describe by ID must confirm the group is gone before the pod is failed.
//!    Pods being deleted or already terminal are left alone.
//!
//! A group without the pod-UID tag is never touched: vnode cannot know whose it is.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use vnode_eci::model::ContainerGroup;

use super::{GroupEntry, tags};

/// What the sweep needs to know about one pod in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct PodFacts {
    /// `namespace/name`.
    pub key: String,
    /// The group the pod's annotation names, if any.
    pub annotated_group: Option<String>,
    /// Has a deletion timestamp.
    pub deleting: bool,
    /// Phase is Succeeded or Failed.
    pub terminal: bool,
}

/// The verdict on one listed group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Its pod is in the store: keep it (and index it).
    Keep,
    /// Its pod is not in the store, but the group is younger than the minimum age: wait.
    TooYoung,
    /// Its pod is not in the store and it is old enough: confirm with a direct GET of the pod.
    CheckPod {
        /// Namespace from the tags.
        namespace: String,
        /// Pod name from the tags.
        name: String,
    },
    /// Another group of the same pod is the pod's; this one is a duplicate, old enough to delete.
    DeleteDuplicate,
    /// A duplicate still younger than the minimum age: wait.
    YoungDuplicate,
    /// No pod-UID tag: never touched.
    Untagged,
}

/// What a direct GET of the pod showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodLookup {
    /// 404: the pod does not exist.
    Gone,
    /// A pod of that name exists with another UID (re-created, e.g. a StatefulSet).
    OtherUid,
    /// The pod exists with the group's UID (the store is behind).
    SameUid,
    /// The GET failed: nothing is known.
    Unknown,
}

/// Whether a group whose pod is not in the store may be deleted after the direct GET.
pub fn orphan_confirmed(lookup: PodLookup) -> bool {
    matches!(lookup, PodLookup::Gone | PodLookup::OtherUid)
}

/// The value of tag `key` on `group`.
pub fn tag<'a>(group: &'a ContainerGroup, key: &str) -> Option<&'a str> {
    group
        .tags
        .iter()
        .find(|t| t.key == key)
        .map(|t| t.value.as_str())
}

/// The index entry of a listed group, when it carries the pod-UID tag.
pub fn entry_of(group: &ContainerGroup) -> Option<GroupEntry> {
    let uid = tag(group, tags::POD_UID).filter(|u| !u.is_empty())?;
    let ns = tag(group, tags::NAMESPACE).unwrap_or_default();
    let name = tag(group, tags::POD_NAME).unwrap_or_default();
    Some(GroupEntry {
        id: group.container_group_id.clone(),
        name: group.container_group_name.clone(),
        pod_uid: uid.to_string(),
        pod_key: format!("{ns}/{name}"),
        zone: Some(group.zone_id.clone()).filter(|z| !z.is_empty()),
        status: Some(group.status.as_str().to_string()).filter(|s| !s.is_empty()),
    })
}

/// Age of a group from its `CreationTime`; `fallback` (how long this process has seen it)
/// when ECI gave no parseable time. The larger of the two is used, so a clock difference
/// cannot make an old group look young forever, nor a missing time make it look old.
pub fn age_of(group: &ContainerGroup, now: jiff::Timestamp, fallback: Duration) -> Duration {
    let created = vnode_eci::wire::parse_timestamp(&group.creation_time)
        .and_then(|t| Duration::try_from(now.duration_since(t)).ok())
        .unwrap_or(Duration::ZERO);
    created.max(fallback)
}

/// The judgement of one complete listing.
#[derive(Debug, Default)]
pub struct Plan {
    /// Index entries for the listing (one per pod UID).
    pub entries: Vec<GroupEntry>,
    /// Verdict per listed group ID.
    pub verdicts: HashMap<String, Verdict>,
}

/// Judges a complete listing against the pods in the store (by UID).
///
/// `indexed` says which group ID the index held for a UID before this listing (the pod
/// path's record wins a tie between duplicates); `age` gives each group's age.
pub fn judge(
    listing: &[ContainerGroup],
    pods: &HashMap<String, PodFacts>,
    indexed: &HashMap<String, String>,
    age: impl Fn(&ContainerGroup) -> Duration,
    min_age: Duration,
) -> Plan {
    let mut by_uid: HashMap<&str, Vec<&ContainerGroup>> = HashMap::new();
    let mut plan = Plan::default();
    for g in listing {
        match tag(g, tags::POD_UID).filter(|u| !u.is_empty()) {
            Some(uid) => by_uid.entry(uid).or_default().push(g),
            None => {
                plan.verdicts
                    .insert(g.container_group_id.clone(), Verdict::Untagged);
            }
        }
    }
    for (uid, mut groups) in by_uid {
        // The pod's group: the index's, else the annotation's, else the oldest live one.
        groups.sort_by_key(|g| {
            (
                g.status.is_terminal(),
                std::cmp::Reverse(age(g)),
                g.container_group_id.clone(),
            )
        });
        let named: HashSet<&str> = indexed
            .get(uid)
            .map(String::as_str)
            .into_iter()
            .chain(pods.get(uid).and_then(|p| p.annotated_group.as_deref()))
            .collect();
        let primary = groups
            .iter()
            .find(|g| indexed.get(uid) == Some(&g.container_group_id))
            .or_else(|| {
                groups.iter().find(|g| {
                    pods.get(uid).and_then(|p| p.annotated_group.as_deref())
                        == Some(g.container_group_id.as_str())
                })
            })
            .or_else(|| groups.first())
            .copied();
        let Some(primary) = primary else { continue };
        if let Some(entry) = entry_of(primary) {
            plan.entries.push(entry);
        }
        for g in groups {
            let verdict = if g.container_group_id != primary.container_group_id {
                if named.contains(g.container_group_id.as_str()) {
                    // Both the index and the annotation name a group and they differ: keep both
                    // and let the pod path settle it; never guess which one is live.
                    Verdict::Keep
                } else if age(g) >= min_age {
                    Verdict::DeleteDuplicate
                } else {
                    Verdict::YoungDuplicate
                }
            } else if pods.contains_key(uid) {
                Verdict::Keep
            } else if age(g) < min_age {
                Verdict::TooYoung
            } else {
                Verdict::CheckPod {
                    namespace: tag(g, tags::NAMESPACE).unwrap_or_default().to_string(),
                    name: tag(g, tags::POD_NAME).unwrap_or_default().to_string(),
                }
            };
            plan.verdicts.insert(g.container_group_id.clone(), verdict);
        }
    }
    plan
}

/// Pods whose annotated group is missing from a complete listing, and for which the index
/// (already updated with that listing) records no group: candidates for "vanished", to be
/// confirmed by a describe by ID. Returns `(pod uid, group id)`.
pub fn vanished_candidates(
    pods: &HashMap<String, PodFacts>,
    listed_ids: &HashSet<String>,
    indexed_after: impl Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = pods
        .iter()
        .filter(|(_, p)| !p.deleting && !p.terminal)
        .filter_map(|(uid, p)| {
            let id = p.annotated_group.as_deref().filter(|id| !id.is_empty())?;
            if listed_ids.contains(id) || indexed_after(uid).is_some() {
                return None;
            }
            Some((uid.clone(), id.to_string()))
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vnode_eci::model::{ContainerGroupStatus, Tag};

    const MIN: Duration = Duration::from_secs(60);

    fn group(
        id: &str,
        uid: Option<&str>,
        age_s: u64,
        status: ContainerGroupStatus,
    ) -> ContainerGroup {
        let now: jiff::Timestamp = "2026-11-25T12:00:00Z".parse().expect("ts");
        let created = now - jiff::SignedDuration::from_secs(age_s as i64);
        let mut tags = vec![
            Tag::new(tags::CLUSTER, "c"),
            Tag::new(tags::NODE, "vk"),
            Tag::new(tags::NAMESPACE, "default"),
            Tag::new(tags::POD_NAME, format!("pod-{id}")),
        ];
        if let Some(uid) = uid {
            tags.push(Tag::new(tags::POD_UID, uid));
        }
        ContainerGroup {
            container_group_id: id.into(),
            container_group_name: format!("name-{id}"),
            status,
            creation_time: created.to_string(),
            tags,
            ..Default::default()
        }
    }

    fn age(g: &ContainerGroup) -> Duration {
        age_of(
            g,
            "2026-11-25T12:00:00Z".parse().expect("ts"),
            Duration::ZERO,
        )
    }

    fn pod(annotated: Option<&str>) -> PodFacts {
        PodFacts {
            key: "default/p".into(),
            annotated_group: annotated.map(String::from),
            deleting: false,
            terminal: false,
        }
    }

    #[test]
    fn decision_table_for_single_groups() {
        use ContainerGroupStatus::Running;
        let listing = vec![
            group("eci-live", Some("u-live"), 600, Running),
            group("eci-young", Some("u-young"), 10, Running),
            group("eci-old", Some("u-old"), 600, Running),
            group("eci-untagged", None, 6000, Running),
        ];
        let pods = HashMap::from([("u-live".to_string(), pod(Some("eci-live")))]);
        let plan = judge(&listing, &pods, &HashMap::new(), age, MIN);
        assert_eq!(plan.verdicts["eci-live"], Verdict::Keep);
        assert_eq!(plan.verdicts["eci-young"], Verdict::TooYoung);
        assert_eq!(
            plan.verdicts["eci-old"],
            Verdict::CheckPod {
                namespace: "default".into(),
                name: "pod-eci-old".into()
            }
        );
        assert_eq!(plan.verdicts["eci-untagged"], Verdict::Untagged);
        let mut indexed: Vec<&str> = plan.entries.iter().map(|e| e.id.as_str()).collect();
        indexed.sort_unstable();
        assert_eq!(indexed, vec!["eci-live", "eci-old", "eci-young"]);
    }

    #[test]
    fn only_a_confirmed_lookup_deletes() {
        assert!(orphan_confirmed(PodLookup::Gone));
        assert!(orphan_confirmed(PodLookup::OtherUid));
        assert!(
            !orphan_confirmed(PodLookup::SameUid),
            "the store is just behind"
        );
        assert!(
            !orphan_confirmed(PodLookup::Unknown),
            "an error is not an answer"
        );
    }

    #[test]
    fn duplicates_keep_the_indexed_or_annotated_group() {
        use ContainerGroupStatus::{Running, ScheduleFailed};
        let listing = vec![
            group("eci-a", Some("u-1"), 900, ScheduleFailed),
            group("eci-b", Some("u-1"), 600, Running),
            group("eci-c", Some("u-1"), 5, Running),
        ];
        // The pod annotation names b: a (old) is deleted, c (young) waits.
        let pods = HashMap::from([("u-1".to_string(), pod(Some("eci-b")))]);
        let plan = judge(&listing, &pods, &HashMap::new(), age, MIN);
        assert_eq!(plan.verdicts["eci-b"], Verdict::Keep);
        assert_eq!(plan.verdicts["eci-a"], Verdict::DeleteDuplicate);
        assert_eq!(plan.verdicts["eci-c"], Verdict::YoungDuplicate);
        assert_eq!(plan.entries.len(), 1);
        assert_eq!(plan.entries[0].id, "eci-b");

        // Without any record, the oldest live group is the pod's.
        let plan = judge(&listing, &HashMap::new(), &HashMap::new(), age, MIN);
        assert_eq!(plan.entries[0].id, "eci-b");

        // Index and annotation disagree: both are kept.
        let indexed = HashMap::from([("u-1".to_string(), "eci-c".to_string())]);
        let plan = judge(&listing, &pods, &indexed, age, MIN);
        assert_eq!(plan.entries[0].id, "eci-c");
        assert_eq!(plan.verdicts["eci-c"], Verdict::Keep);
        assert_eq!(plan.verdicts["eci-b"], Verdict::Keep);
        assert_eq!(plan.verdicts["eci-a"], Verdict::DeleteDuplicate);
    }

    #[test]
    fn vanished_needs_absence_from_the_listing_and_from_the_index() {
        let mut deleting = pod(Some("eci-d"));
        deleting.deleting = true;
        let mut done = pod(Some("eci-t"));
        done.terminal = true;
        let pods = HashMap::from([
            ("u-listed".to_string(), pod(Some("eci-listed"))),
            ("u-gone".to_string(), pod(Some("eci-gone"))),
            ("u-new".to_string(), pod(Some("eci-old-annotation"))),
            ("u-none".to_string(), pod(None)),
            ("u-del".to_string(), deleting),
            ("u-term".to_string(), done),
        ]);
        let listed = HashSet::from(["eci-listed".to_string()]);
        let got = vanished_candidates(&pods, &listed, |uid| {
            (uid == "u-new").then(|| "eci-recorded-after-listing".to_string())
        });
        assert_eq!(got, vec![("u-gone".to_string(), "eci-gone".to_string())]);
    }

    #[test]
    fn age_uses_the_creation_time_or_how_long_it_was_seen() {
        let now: jiff::Timestamp = "2026-11-25T12:00:00Z".parse().expect("ts");
        let g = group("eci-1", Some("u"), 120, ContainerGroupStatus::Running);
        assert_eq!(age_of(&g, now, Duration::ZERO), Duration::from_secs(120));
        let mut no_time = g.clone();
        no_time.creation_time = "garbage".into();
        assert_eq!(
            age_of(&no_time, now, Duration::from_secs(7)),
            Duration::from_secs(7)
        );
        // A creation time in the future (clock skew) is not negative.
        let mut future = g;
        future.creation_time = "2026-11-25T13:00:00Z".into();
        assert_eq!(age_of(&future, now, Duration::ZERO), Duration::ZERO);
    }
}
