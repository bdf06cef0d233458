//! What this node has running in ECI: the [`GroupIndex`] (pod UID → container group), kept
//! true by the observer (tag listings, status polling, the reconcile sweep) and by the pod
//! controller (which records what it creates and deletes).
//!
//! The index is the seam between the two halves of the pod lifecycle. The controller asks
//! it before every create ("does this UID already have a group?") so a restart, a lost
//! response or a changed plugin never creates a second group; the observer owns everything
//! that comes back from ECI. Neither half knows the other's internals.
//!
//! Invariant: the index only ever *adds* knowledge from a complete listing; a failed or
//! partial listing changes nothing ("unknown", never "gone").

pub mod observer;
pub mod reconcile;
pub mod status;

#[cfg(test)]
mod observer_tests;

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::RwLock;
use tokio::sync::watch;

/// Tag keys every container group created by vnode carries. The host sets them on every
/// request after translation, whatever the translator plugin returned, so recovery never
/// depends on a plugin's cooperation.
pub mod tags {
    /// The cluster name (`ECI_CLUSTER_NAME`).
    pub const CLUSTER: &str = "vnode.io/cluster";
    /// The virtual node's name.
    pub const NODE: &str = "vnode.io/node";
    /// The pod's namespace.
    pub const NAMESPACE: &str = "vnode.io/namespace";
    /// The pod's name.
    pub const POD_NAME: &str = "vnode.io/pod-name";
    /// The pod's UID: the identity that links a group to exactly one pod.
    pub const POD_UID: &str = "vnode.io/pod-uid";
}

/// Pod annotations the host writes (the operator-visible record of a decision).
pub mod annotations {
    /// The container group's ID.
    pub const GROUP_ID: &str = "vnode.io/container-group-id";
    /// Zone the group landed in.
    pub const ZONE: &str = "vnode.io/zone";
    /// Instance spec or type the group runs on.
    pub const SPEC: &str = "vnode.io/spec";
    /// `name@version` of the placement plugin that decided.
    pub const PLACEMENT: &str = "vnode.io/placement-plugin";
    /// `name@version` of the translator plugin that built the request.
    pub const TRANSLATOR: &str = "vnode.io/translator-plugin";
}

/// One container group as this node knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupEntry {
    /// `ContainerGroupId`.
    pub id: String,
    /// `ContainerGroupName`.
    pub name: String,
    /// The pod UID from the group's tag.
    pub pod_uid: String,
    /// `namespace/name` from the group's tags (for logs and orphan reports).
    pub pod_key: String,
    /// Zone, when known.
    pub zone: Option<String>,
    /// Last status seen (ECI wire name, e.g. `Running`), when known.
    pub status: Option<String>,
}

#[derive(Debug)]
struct Slot {
    entry: GroupEntry,
    /// When the controller recorded it; a listing that started before this cannot have seen it.
    recorded_at: Instant,
}

/// Pod UID → container group. Cheap to share (`Arc<GroupIndex>`), lock held only for map
/// operations, never across an await.
#[derive(Debug)]
pub struct GroupIndex {
    groups: RwLock<Groups>,
    listed: watch::Sender<bool>,
}

/// The index's map and its groups per zone, changed together under one lock.
#[derive(Debug, Default)]
struct Groups {
    by_uid: HashMap<String, Slot>,
    /// Groups per known zone, kept with every change: placement asks once per pod, and
    /// counting the whole map there made a burst of N pods cost O(N²).
    per_zone: HashMap<String, u32>,
}

impl Groups {
    fn count(&mut self, slot: &Slot) {
        if let Some(zone) = &slot.entry.zone {
            *self.per_zone.entry(zone.clone()).or_default() += 1;
        }
    }

    fn uncount(&mut self, slot: &Slot) {
        if let Some(zone) = &slot.entry.zone
            && let Some(n) = self.per_zone.get_mut(zone)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_zone.remove(zone);
            }
        }
    }

    fn insert(&mut self, uid: String, slot: Slot) {
        self.count(&slot);
        if let Some(old) = self.by_uid.insert(uid, slot) {
            self.uncount(&old);
        }
    }

    fn remove(&mut self, uid: &str) {
        if let Some(old) = self.by_uid.remove(uid) {
            self.uncount(&old);
        }
    }
}

impl Default for GroupIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl GroupIndex {
    /// An empty index that has not seen a complete listing yet.
    pub fn new() -> Self {
        Self {
            groups: RwLock::new(Groups::default()),
            listed: watch::channel(false).0,
        }
    }

    /// The group of pod `uid`, if one is known.
    pub fn get(&self, uid: &str) -> Option<GroupEntry> {
        self.groups.read().by_uid.get(uid).map(|s| s.entry.clone())
    }

    /// Records a group the controller just created or adopted.
    pub fn insert(&self, entry: GroupEntry) {
        let uid = entry.pod_uid.clone();
        self.groups.write().insert(
            uid,
            Slot {
                entry,
                recorded_at: Instant::now(),
            },
        );
    }

    /// Updates the status of a known group (no-op when the group is not known any more).
    pub fn set_status(&self, uid: &str, group_id: &str, status: &str) {
        if let Some(slot) = self.groups.write().by_uid.get_mut(uid)
            && slot.entry.id == group_id
        {
            slot.entry.status = Some(status.to_string());
        }
    }

    /// Forgets pod `uid`'s group, but only if it is still `group_id` (a newer group for the
    /// same UID is never dropped by a stale caller).
    pub fn remove(&self, uid: &str, group_id: &str) {
        let mut groups = self.groups.write();
        if groups
            .by_uid
            .get(uid)
            .is_some_and(|s| s.entry.id == group_id)
        {
            groups.remove(uid);
        }
    }

    /// Replaces the index with a *complete* listing that started at `listing_started`.
    /// Entries recorded after that instant are kept (the listing could not have seen them).
    /// Marks the index as listed.
    pub fn replace_all(&self, listing: Vec<GroupEntry>, listing_started: Instant) {
        let mut groups = self.groups.write();
        let mut next = Groups::default();
        for entry in listing {
            let slot = Slot {
                entry,
                recorded_at: listing_started,
            };
            next.insert(slot.entry.pod_uid.clone(), slot);
        }
        for (uid, slot) in groups.by_uid.drain() {
            if slot.recorded_at > listing_started {
                next.insert(uid, slot);
            }
        }
        *groups = next;
        drop(groups);
        self.listed.send_replace(true);
    }

    /// True once a complete listing has been applied.
    pub fn is_listed(&self) -> bool {
        *self.listed.borrow()
    }

    /// Waits until a complete listing has been applied. Until then the controller must
    /// not create anything: it could not know whether the pod already has a group.
    pub async fn wait_until_listed(&self) {
        let mut rx = self.listed.subscribe();
        // The sender lives in `self`, so `wait_for` cannot fail while we borrow it.
        let _ = rx.wait_for(|listed| *listed).await;
    }

    /// All known groups.
    pub fn snapshot(&self) -> Vec<GroupEntry> {
        self.groups
            .read()
            .by_uid
            .values()
            .map(|s| s.entry.clone())
            .collect()
    }

    /// Known groups per zone (groups without a known zone are not counted), in zone order.
    /// Kept up to date with every change, so this costs O(zones), not O(groups): placement
    /// asks for it once per pod.
    pub fn zone_usage(&self) -> std::collections::BTreeMap<String, u32> {
        self.groups
            .read()
            .per_zone
            .iter()
            .map(|(z, n)| (z.clone(), *n))
            .collect()
    }

    /// Number of known groups.
    pub fn len(&self) -> usize {
        self.groups.read().by_uid.len()
    }

    /// True when no group is known.
    pub fn is_empty(&self) -> bool {
        self.groups.read().by_uid.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(uid: &str, id: &str) -> GroupEntry {
        GroupEntry {
            id: id.into(),
            name: format!("name-{id}"),
            pod_uid: uid.into(),
            pod_key: "default/p".into(),
            zone: None,
            status: None,
        }
    }

    #[test]
    fn a_listing_keeps_groups_recorded_after_it_started() {
        let index = GroupIndex::new();
        let started = Instant::now();
        index.insert(entry("u-new", "eci-new"));
        index.replace_all(vec![entry("u-old", "eci-old")], started);
        assert!(index.is_listed());
        assert_eq!(index.get("u-new").map(|e| e.id), Some("eci-new".into()));
        assert_eq!(index.get("u-old").map(|e| e.id), Some("eci-old".into()));
    }

    #[test]
    fn a_listing_drops_what_it_no_longer_contains() {
        let index = GroupIndex::new();
        index.insert(entry("u-1", "eci-1"));
        std::thread::sleep(std::time::Duration::from_millis(2));
        index.replace_all(Vec::new(), Instant::now());
        assert!(index.get("u-1").is_none());
    }

    #[test]
    fn remove_and_set_status_ignore_a_different_group_for_the_same_uid() {
        let index = GroupIndex::new();
        index.insert(entry("u-1", "eci-2"));
        index.remove("u-1", "eci-1");
        index.set_status("u-1", "eci-1", "Failed");
        let e = index.get("u-1").expect("kept");
        assert_eq!(e.id, "eci-2");
        assert_eq!(e.status, None);
        index.set_status("u-1", "eci-2", "Running");
        assert_eq!(
            index.get("u-1").and_then(|e| e.status),
            Some("Running".into())
        );
        index.remove("u-1", "eci-2");
        assert!(index.is_empty());
    }

    #[test]
    fn zone_usage_counts_groups_with_a_zone() {
        let index = GroupIndex::new();
        for (uid, zone) in [
            ("u-1", Some("z-a")),
            ("u-2", Some("z-a")),
            ("u-3", Some("z-b")),
            ("u-4", None),
        ] {
            let mut e = entry(uid, &format!("eci-{uid}"));
            e.zone = zone.map(String::from);
            index.insert(e);
        }
        let usage = index.zone_usage();
        assert_eq!(usage.get("z-a"), Some(&2));
        assert_eq!(usage.get("z-b"), Some(&1));
        assert_eq!(usage.len(), 2);
    }

    /// The per-zone counts follow every change: a re-recorded group moving zones, removals
    /// (also a stale one, which changes nothing), and a listing that replaces the index.
    #[test]
    fn zone_usage_follows_inserts_removals_and_listings() {
        let index = GroupIndex::new();
        let started = Instant::now();
        // Recorded strictly after the listing started, whatever the clock's resolution.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let zoned = |uid: &str, id: &str, zone: Option<&str>| {
            let mut e = entry(uid, id);
            e.zone = zone.map(String::from);
            e
        };
        index.insert(zoned("u-1", "eci-1", Some("z-a")));
        index.insert(zoned("u-2", "eci-2", Some("z-a")));
        index.insert(zoned("u-1", "eci-1", Some("z-b")));
        let usage = index.zone_usage();
        assert_eq!(usage.get("z-a"), Some(&1));
        assert_eq!(usage.get("z-b"), Some(&1));
        index.remove("u-2", "eci-other");
        assert_eq!(index.zone_usage().get("z-a"), Some(&1), "a stale remove");
        index.remove("u-2", "eci-2");
        assert_eq!(index.zone_usage().get("z-a"), None, "no zero counts kept");
        // A listing started before u-1 was recorded keeps u-1 and adds its own groups.
        index.replace_all(
            vec![
                zoned("u-3", "eci-3", Some("z-c")),
                zoned("u-4", "eci-4", None),
                zoned("u-5", "eci-5", Some("z-c")),
            ],
            started,
        );
        let usage = index.zone_usage();
        assert_eq!(usage.get("z-b"), Some(&1));
        assert_eq!(usage.get("z-c"), Some(&2));
        assert_eq!(usage.len(), 2);
        // What the counts say is what counting the entries says.
        let mut counted = std::collections::BTreeMap::new();
        for e in index.snapshot() {
            if let Some(z) = e.zone {
                *counted.entry(z).or_insert(0u32) += 1;
            }
        }
        assert_eq!(index.zone_usage(), counted);
    }

    #[tokio::test]
    async fn wait_until_listed_returns_after_the_first_listing() {
        let index = std::sync::Arc::new(GroupIndex::new());
        let waiter = {
            let index = index.clone();
            tokio::spawn(async move { index.wait_until_listed().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        index.replace_all(Vec::new(), Instant::now());
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("joined");
    }
}
