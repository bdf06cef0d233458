//! The pod lifecycle as a state enum and a pure `step` function (the kube-runtime watcher
//! idiom): given the state, what we know about the pod, and the outcome of the last action,
//! return the next state and the next action. No I/O here, so every transition is unit-tested.

use std::time::Duration;

/// Where a pod is in its life on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PodState {
    /// Seen, nothing done yet.
    Pending,
    /// Fetching what the pod references (ConfigMaps, Secrets, env `valueFrom`).
    Resolving,
    /// Asking the placement plugin for ordered attempts.
    Placing,
    /// Asking the translator plugin for the CreateContainerGroup request.
    Translating,
    /// Calling CreateContainerGroup (idempotent: UID-derived ClientToken).
    Creating,
    /// The container group exists; status flows back from ECI.
    Running,
    /// Deletion requested; deleting the container group.
    Terminating,
    /// Nothing left to do; forget the pod.
    Gone,
}

impl PodState {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Resolving => "resolving",
            Self::Placing => "placing",
            Self::Translating => "translating",
            Self::Creating => "creating",
            Self::Running => "running",
            Self::Terminating => "terminating",
            Self::Gone => "gone",
        }
    }
}

/// How a step failed; decides between retry, wait and giving up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Worth retrying with backoff (throttling, 5xx, timeouts, no stock anywhere yet).
    Transient,
    /// Will not succeed without a change to the pod or its references (missing mandatory
    /// Secret, plugin refusal, invalid spec): wait for the pod or config to change.
    Permanent,
    /// The pod path is not available in this build or right now (e.g. no plugin loaded, a
    /// mandatory Secret missing): wait, re-check slowly, never fake progress, never fail the pod.
    Unavailable,
    /// Every placement attempt ran out of stock: ask placement again (with the stock-outs
    /// in its context) after a backoff.
    Replan,
}

/// Result of the last action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It worked.
    Done,
    /// It failed this way.
    Failed(FailureKind),
}

/// Facts about the pod that steer the machine (from the API object and our records).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodFacts {
    /// `metadata.deletionTimestamp` is set, or the pod vanished from the API.
    pub deleting: bool,
    /// A container group exists (or may exist) for this pod.
    pub has_group: bool,
    /// The pod already reached Succeeded/Failed in the API.
    pub terminal: bool,
    /// `restartPolicy: Never` (a permanent failure marks the pod Failed instead of Pending).
    pub restart_never: bool,
    /// Consecutive transient failures so far (for backoff).
    pub attempts: u32,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Fetch the pod's references.
    Resolve,
    /// Call the placement plugin.
    Place,
    /// Call the translator plugin.
    Translate,
    /// CreateContainerGroup.
    Create,
    /// Nothing until status or the pod changes (status polling drives Running pods).
    Watch,
    /// DeleteContainerGroup.
    DeleteGroup,
    /// Finish the pod's deletion in the API (grace period honoured by the caller).
    FinishDeletion,
    /// Retry the same state after a backoff.
    RetryAfter(Duration),
    /// Stay put with an event until the pod (or the plugin set) changes; re-check after this.
    WaitForChange(Duration),
    /// Mark the pod Failed (restartPolicy Never and a permanent failure).
    MarkFailed,
    /// Drop our record.
    Forget,
}

/// Backoff for transient failures: 1 s doubling to 5 min, so nothing loops hot.
pub fn backoff(attempts: u32) -> Duration {
    let secs = 1u64.checked_shl(attempts.min(9)).unwrap_or(512).min(300);
    Duration::from_secs(secs)
}

/// How long a pod blocked on a permanent or unavailable condition waits before a re-check.
pub const RECHECK: Duration = Duration::from_secs(60);

/// The transition function.
pub fn step(state: PodState, facts: PodFacts, last: Option<Outcome>) -> (PodState, Action) {
    use Action as A;
    use PodState as S;
    // Deletion pre-empts everything except deletion itself.
    if facts.deleting && !matches!(state, S::Terminating | S::Gone) {
        return if facts.has_group {
            (S::Terminating, A::DeleteGroup)
        } else {
            (S::Gone, A::FinishDeletion)
        };
    }
    if facts.terminal && !matches!(state, S::Terminating | S::Gone) && !facts.has_group {
        return (S::Gone, A::Forget);
    }
    let on_failure = |state: PodState, kind: FailureKind| match kind {
        FailureKind::Transient => (state, A::RetryAfter(backoff(facts.attempts))),
        FailureKind::Replan if state == S::Creating => {
            (S::Placing, A::RetryAfter(backoff(facts.attempts)))
        }
        FailureKind::Replan => (state, A::RetryAfter(backoff(facts.attempts))),
        FailureKind::Permanent if facts.restart_never => (S::Gone, A::MarkFailed),
        FailureKind::Permanent | FailureKind::Unavailable => {
            (S::Pending, A::WaitForChange(RECHECK))
        }
    };
    match (state, last) {
        (S::Pending, _) => (S::Resolving, A::Resolve),
        (S::Resolving, Some(Outcome::Done)) => (S::Placing, A::Place),
        (S::Placing, Some(Outcome::Done)) => (S::Translating, A::Translate),
        (S::Translating, Some(Outcome::Done)) => (S::Creating, A::Create),
        (S::Creating, Some(Outcome::Done)) => (S::Running, A::Watch),
        // A failed create may have created the group anyway (timeout after the server acted):
        // the ClientToken makes the retry idempotent, so retrying Create is safe.
        (S::Resolving | S::Placing | S::Translating | S::Creating, Some(Outcome::Failed(kind))) => {
            on_failure(state, kind)
        }
        (S::Resolving, None) => (S::Resolving, A::Resolve),
        (S::Placing, None) => (S::Placing, A::Place),
        (S::Translating, None) => (S::Translating, A::Translate),
        (S::Creating, None) => (S::Creating, A::Create),
        (S::Running, _) => (S::Running, A::Watch),
        (S::Terminating, Some(Outcome::Done)) => (S::Gone, A::FinishDeletion),
        (
            S::Terminating,
            Some(Outcome::Failed(
                FailureKind::Transient | FailureKind::Unavailable | FailureKind::Replan,
            )),
        ) => (S::Terminating, A::RetryAfter(backoff(facts.attempts))),
        // A permanent delete failure (e.g. the group is already gone) ends in finishing the pod.
        (S::Terminating, Some(Outcome::Failed(FailureKind::Permanent))) => {
            (S::Gone, A::FinishDeletion)
        }
        (S::Terminating, None) => (S::Terminating, A::DeleteGroup),
        (S::Gone, _) => (S::Gone, A::Forget),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action as A;
    use PodState as S;

    const OK: Option<Outcome> = Some(Outcome::Done);

    #[test]
    fn happy_path_walks_every_state_in_order() {
        let f = PodFacts::default();
        let mut state = S::Pending;
        let mut actions = Vec::new();
        let mut last = None;
        for _ in 0..6 {
            let (next, action) = step(state, f, last);
            actions.push(action);
            state = next;
            last = OK;
        }
        assert_eq!(
            actions,
            vec![
                A::Resolve,
                A::Place,
                A::Translate,
                A::Create,
                A::Watch,
                A::Watch
            ]
        );
        assert_eq!(state, S::Running);
    }

    #[test]
    fn deletion_preempts_and_deletes_the_group_first() {
        let f = PodFacts {
            deleting: true,
            has_group: true,
            ..PodFacts::default()
        };
        assert_eq!(step(S::Running, f, None), (S::Terminating, A::DeleteGroup));
        assert_eq!(step(S::Terminating, f, OK), (S::Gone, A::FinishDeletion));
        assert_eq!(step(S::Gone, f, None), (S::Gone, A::Forget));
        let no_group = PodFacts {
            deleting: true,
            ..PodFacts::default()
        };
        assert_eq!(
            step(S::Placing, no_group, None),
            (S::Gone, A::FinishDeletion)
        );
    }

    #[test]
    fn transient_failures_back_off_without_looping_hot() {
        let f = PodFacts {
            attempts: 3,
            ..PodFacts::default()
        };
        let (s, a) = step(
            S::Creating,
            f,
            Some(Outcome::Failed(FailureKind::Transient)),
        );
        assert_eq!((s, a), (S::Creating, A::RetryAfter(Duration::from_secs(8))));
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(50), Duration::from_secs(300));
        let (s, a) = step(
            S::Terminating,
            f,
            Some(Outcome::Failed(FailureKind::Transient)),
        );
        assert_eq!(
            (s, a),
            (S::Terminating, A::RetryAfter(Duration::from_secs(8)))
        );
    }

    #[test]
    fn permanent_failures_fail_never_restart_pods_and_park_the_others() {
        let never = PodFacts {
            restart_never: true,
            ..PodFacts::default()
        };
        assert_eq!(
            step(
                S::Placing,
                never,
                Some(Outcome::Failed(FailureKind::Permanent))
            ),
            (S::Gone, A::MarkFailed)
        );
        let always = PodFacts::default();
        assert_eq!(
            step(
                S::Resolving,
                always,
                Some(Outcome::Failed(FailureKind::Permanent))
            ),
            (S::Pending, A::WaitForChange(RECHECK))
        );
        // An unavailable pod path never fails the pod, even with restartPolicy Never.
        assert_eq!(
            step(
                S::Placing,
                never,
                Some(Outcome::Failed(FailureKind::Unavailable))
            ),
            (S::Pending, A::WaitForChange(RECHECK))
        );
    }

    #[test]
    fn no_stock_anywhere_goes_back_to_placement_after_a_backoff() {
        let f = PodFacts {
            attempts: 2,
            ..PodFacts::default()
        };
        assert_eq!(
            step(S::Creating, f, Some(Outcome::Failed(FailureKind::Replan))),
            (S::Placing, A::RetryAfter(Duration::from_secs(4)))
        );
        assert_eq!(step(S::Placing, f, None), (S::Placing, A::Place));
    }

    #[test]
    fn terminal_pods_without_groups_are_forgotten() {
        let f = PodFacts {
            terminal: true,
            ..PodFacts::default()
        };
        assert_eq!(step(S::Pending, f, None), (S::Gone, A::Forget));
    }
}
